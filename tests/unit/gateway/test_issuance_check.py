"""The backend-trust checks (docs/security.md, rule 4): what a CSR may request before a
backend is called, and what a certificate a backend returns may carry."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.issuance_check import (
    check_issued,
    names_mismatch,
    policy_oids,
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
