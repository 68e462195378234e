"""The backend-trust checks (docs/security.md, rule 4): what a CSR may request before a
backend is called, and what a certificate a backend returns may carry."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, ExtensionOID, NameOID

from gateway.issuance_check import (
    check_issued,
    names_mismatch,
    policy_oids,
    requested_attribute_problems,
    requested_extension_problems,
)
from gateway.model import (
    Decision,
    EnrollmentRequest,
    Identifier,
    IdentifierType,
    IssuedCertificate,
)
from tests.contract.conftest import request_and_decision
from tests.support.pki import make_csr

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unit CA")])


def _ku(**bits: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(*(bits.get(n, False) for n in names))


def issue(*, cn: str = "svc.example.test", sans: list[x509.GeneralName] | None = None,
          ekus: list[x509.ObjectIdentifier] | None = None, key_usage: x509.KeyUsage | None = None,
          ca: bool = False, extra: tuple[x509.ExtensionType, ...] = (),
          key: ec.EllipticCurvePublicKey | None = None, days: int = 30,
          subject: x509.Name | None = None) -> tuple[IssuedCertificate, EnrollmentRequest, Decision]:
    """A certificate as a CA would sign the contract's request: well-behaved by default,
    ``ekus=[]`` and ``sans=[]`` leave the extension out."""
    request, decision = request_and_decision(cn)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(subject or request.csr.subject).issuer_name(CA_NAME)
               .public_key(key or request.csr.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(seconds=30))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(key_usage or _ku(digital_signature=True), critical=True)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   CA_KEY.public_key()), critical=False))
    names = [x509.DNSName(cn)] if sans is None else sans
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    purposes = [SERVER, CLIENT] if ekus is None else ekus
    if purposes:
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    cert = builder.sign(CA_KEY, hashes.SHA256())
    issued = IssuedCertificate(format(cert.serial_number, "x"), CA_NAME.rfc4514_string(),
                               cert.subject.rfc4514_string(), (), cert.not_valid_before_utc,
                               cert.not_valid_after_utc, cert.public_bytes(Encoding.DER), (),
                               "unit")
    return issued, request, decision


def violations(**kwargs: Any) -> list[str]:
    issued, request, decision = issue(**kwargs)
    return check_issued(issued, decision, request, now=dt.datetime.now(dt.UTC),
                        max_validity=dt.timedelta(days=397))


def test_a_certificate_within_the_decision_passes() -> None:
    assert violations() == []
    assert violations(ekus=[CLIENT]) == []  # fewer EKUs than decided
    assert violations(extra=(x509.SubjectKeyIdentifier(b"\x01" * 20),)) == []
    # The SAN the policy derived from the CN may be missing (a CA that signs the CSR as is).
    assert violations(sans=[]) == []


@pytest.mark.parametrize(("extension", "expected"), [
    (x509.NameConstraints([x509.DNSName("example.test")], None), "nameConstraints"),
    (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.311.25.2"), b"\x30\x00"),
     "Microsoft SID"),
    (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
     "extension 1.3.6.1.4.1.99999.1"),
])
def test_extensions_beyond_the_decision_are_violations(extension: x509.ExtensionType,
                                                       expected: str) -> None:
    found = violations(extra=(extension,))
    assert len(found) == 1 and expected in found[0], found


def test_ca_flag_key_usage_and_eku_beyond_the_decision() -> None:
    assert violations(ca=True) == ["basicConstraints CA:TRUE (a CA certificate)"]
    found = violations(key_usage=_ku(digital_signature=True, key_cert_sign=True, crl_sign=True))
    assert found == ["key usage crl_sign, key_cert_sign beyond the decision"]
    found = violations(ekus=[CLIENT, ExtendedKeyUsageOID.CODE_SIGNING,
                             ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    assert found == ["extended key usage codeSigning, anyExtendedKeyUsage beyond the decision"]
    assert "no extendedKeyUsage (any purpose)" in violations(ekus=[])[0]


def test_names_key_and_validity() -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert violations(key=other) == ["the certificate's public key is not the CSR's"]
    extra = violations(sans=[x509.DNSName("svc.example.test"), x509.DNSName("admin.corp.example")])
    assert extra == ["subjectAltNames not in the decision: dns:admin.corp.example"]
    wrong_cn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.bank.example")])
    assert any("common name differs" in v for v in violations(subject=wrong_cn))
    more = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "svc.example.test")])
    assert any("attributes the policy did not decide" in v for v in violations(subject=more))
    network = violations(sans=[x509.DNSName("svc.example.test"),
                               x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))])
    assert any("IPAddress network" in v for v in network)
    assert any("notAfter" in v for v in violations(days=500))


def test_a_subject_that_loses_attributes_is_accepted() -> None:
    """Vault ``sign`` keeps only the CN of a subject: fewer attributes, none changed."""
    issued, request, decision = issue()
    decided = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "svc.example.test")])
    found = check_issued(issued, dataclasses.replace(decision, subject=decided), request,
                         now=dt.datetime.now(dt.UTC))
    assert found == []


def test_requested_extensions_beyond_the_decision_are_refused() -> None:
    key_usage = frozenset({"digital_signature"})
    ekus = (CLIENT.dotted_string,)
    clean, _ = make_csr("d.example.test", dns=["d.example.test"])
    assert requested_extension_problems(clean, key_usage, ekus) == []
    key = ec.generate_private_key(ec.SECP256R1())

    def csr(*extensions: tuple[x509.ExtensionType, bool]) -> x509.CertificateSigningRequest:
        builder = x509.CertificateSigningRequestBuilder().subject_name(clean.subject)
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(key, hashes.SHA256())

    within = csr((_ku(digital_signature=True), True), (x509.ExtendedKeyUsage([CLIENT]), False),
                 (x509.BasicConstraints(ca=False, path_length=None), True),
                 (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False))
    assert requested_extension_problems(within, key_usage, ekus) == []
    for ext, expected in (
            (_ku(digital_signature=True, key_cert_sign=True, crl_sign=True), "crl_sign, key_cert_sign"),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), "codeSigning"),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), "anyExtendedKeyUsage"),
            (x509.BasicConstraints(ca=True, path_length=None), "CA:TRUE"),
            (x509.NameConstraints([x509.DNSName("example.test")], None), "nameConstraints"),
            (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.311.25.2"), b"\x30\x00"),
             "Microsoft SID"),
            (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00"),
             "1.3.6.1.4.1.99999.7")):
        problems = requested_extension_problems(csr((ext, True)), key_usage, ekus)
        assert len(problems) == 1 and expected in problems[0], problems


def _with_attributes(*attributes: tuple[str, bytes]) -> x509.CertificateSigningRequest:
    clean, key = make_csr("d.example.test", dns=["d.example.test"])
    builder = (x509.CertificateSigningRequestBuilder().subject_name(clean.subject)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("d.example.test")]),
                              critical=False))
    for oid, value in attributes:
        builder = builder.add_attribute(x509.ObjectIdentifier(oid), value)
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def test_informational_csr_attributes_are_tolerated() -> None:
    # challengePassword (SCEP), friendlyName (certmonger), unstructuredName, and what
    # Windows and Intune clients send: OS version, client information, enrollment CSP.
    csr = _with_attributes((AttributeOID.CHALLENGE_PASSWORD.dotted_string, b"secret"),
                           ("1.2.840.113549.1.9.20", b"certmonger"),
                           (AttributeOID.UNSTRUCTURED_NAME.dotted_string, b"router-1"),
                           ("1.3.6.1.4.1.311.13.2.3", b"10.0.19045.2"),
                           ("1.3.6.1.4.1.311.21.20", b"client"),
                           ("1.3.6.1.4.1.311.13.2.2", b"csp"))
    assert requested_attribute_problems(csr) == []


@pytest.mark.parametrize(("oid", "value", "expected"), [
    ("1.3.6.1.4.1.311.13.2.1", b"SAN:upn=administrator@corp.example",
     "Microsoft enrollment name-value pairs (1.3.6.1.4.1.311.13.2.1)"),
    ("1.3.6.1.4.1.311.13.2.1", b"CertificateTemplate:SubCA", "1.3.6.1.4.1.311.13.2.1"),
    ("1.3.6.1.4.1.99999.3", b"x", "1.3.6.1.4.1.99999.3"),
])
def test_csr_attributes_a_ca_may_act_on_are_refused(oid: str, value: bytes, expected: str) -> None:
    problems = requested_attribute_problems(_with_attributes(
        (AttributeOID.CHALLENGE_PASSWORD.dotted_string, b"secret"), (oid, value)))
    assert len(problems) == 1 and expected in problems[0], problems
    assert "does not pass to a CA" in problems[0]


def _duplicated_extension(der: bytes) -> bytes:
    """The certificate with its last extension twice (cryptography refuses to build one)."""
    cert = asn1_x509.Certificate.load(der)
    tbs = cert["tbs_certificate"]
    extensions = list(tbs["extensions"])
    tbs["extensions"] = asn1_x509.Extensions([*extensions, extensions[-1]])
    return bytes(cert.dump(force=True))


def test_an_unreadable_certificate_is_a_violation_not_an_error() -> None:
    issued, request, decision = issue()
    duplicated = dataclasses.replace(issued, der=_duplicated_extension(issued.der))
    # [5] ediPartyName: a general name cryptography does not support.
    edi_party = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                                           bytes.fromhex("3007a505a1030c0178"))
    unsupported, _, _ = issue(sans=[], extra=(edi_party,))
    for certificate in (duplicated, unsupported, dataclasses.replace(issued, der=b"\x30\x00")):
        found = check_issued(certificate, decision, request, now=dt.datetime.now(dt.UTC))
        assert len(found) == 1 and found[0].startswith("the certificate cannot be read"), found


def test_names_mismatch_for_ca_that_sign_the_csr_as_sent() -> None:
    request, decision = request_and_decision("svc.example.test")
    assert names_mismatch(request.csr, decision, signer="ADCS") is None
    more = dataclasses.replace(decision, sans=(*decision.sans,
                                               Identifier(IdentifierType.DNS, "x.example.test")))
    assert "ADCS would issue the CSR's subjectAltNames" in str(
        names_mismatch(request.csr, more, signer="ADCS"))
    cn_only, _ = make_csr("svc.example.test")  # the policy adds dns:svc.example.test
    assert names_mismatch(cn_only, decision, signer="ADCS") is None


def test_policy_oids() -> None:
    policies = x509.CertificatePolicies([
        x509.PolicyInformation(CLIENT, None),
        x509.PolicyInformation(x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.4"), ["a"])])
    der = policies.public_bytes()
    assert policy_oids(der) == [CLIENT.dotted_string, "1.3.6.1.4.1.311.10.3.4"]
    with pytest.raises(ValueError):
        policy_oids(der[:-1])
