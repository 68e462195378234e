"""pkilint finds no ERROR in what the internal CA signs: CA and leaf certificates, CRLs, OCSP.

pkilint is a dev dependency; if it is missing these tests fail, they do not skip.  Names
are fully qualified and URIs are http(s): pkilint's PKIX linter (through the
``validators`` package) reports single-label names such as ``localhost``, wildcards, and
URIs of other schemes (``urn:``, ``spiffe:``) as invalid syntax, although RFC 5280 and
RFC 3986 allow them; which names to issue is the policy's question, not the CA's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca_backends.base import RevokedEntry
from ca_backends.internal import InternalCa, init_internal_ca, issue_tls_server_cert
from gateway.clock import FixedClock
from gateway.model import (
    Decision,
    EnrollmentRequest,
    Identifier,
    IdentifierType,
    IssuedCertificate,
    Operation,
    Outcome,
    Principal,
    PrincipalKind,
    Protocol,
    RevocationReason,
)

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
URL = "http://pki.example.com"

LeafKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def pkilint(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a pkilint console script (or its module when the script is not on PATH)."""
    script = shutil.which(tool)
    if script is not None:
        command = [script]
    elif importlib.util.find_spec("pkilint") is not None:
        command = [sys.executable, "-m", f"pkilint.bin.{tool}"]
    else:
        pytest.fail("pkilint is not installed (pip install -e '.[dev]')")
    return subprocess.run([*command, *args], capture_output=True, text=True, check=False)


def assert_clean(tool: str, der: bytes, path: Path, *options: str) -> None:
    path.write_bytes(der)
    result = pkilint(tool, "lint", *options, "-s", "ERROR", str(path))
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (0, "", "")


def lint_certificate(certificate: x509.Certificate, path: Path) -> None:
    assert_clean("lint_pkix_cert", certificate.public_bytes(serialization.Encoding.DER), path)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["ec-p256", "ec-p384", "rsa-2048"])
def ca(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> InternalCa:
    directory = tmp_path_factory.mktemp("ca") / "ca"
    passphrase = secrets.token_urlsafe(24).encode()
    clock = FixedClock(NOW)
    init_internal_ca(directory, passphrase, request.param, clock=clock, organization="Example Org")
    return InternalCa.load("internal", directory, passphrase, public_http_url=URL, clock=clock)


def make_key(kind: str) -> LeafKey:
    if kind == "rsa":
        return rsa.generate_private_key(65537, 2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    return ed25519.Ed25519PrivateKey.generate()


def enroll(ca: InternalCa, key: LeafKey, decision: Decision) -> IssuedCertificate:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)
    request = EnrollmentRequest(
        protocol=Protocol.EST,
        operation=Operation.ENROLL,
        profile="default",
        csr=csr,
        csr_der=csr.public_bytes(serialization.Encoding.DER),
        principal=Principal(PrincipalKind.PASSWORD, "device-1"),
    )
    result = asyncio.run(ca.issue(request, decision))
    assert isinstance(result, IssuedCertificate)
    return result


def decision(
    subject: x509.Name,
    sans: tuple[Identifier, ...],
    key_usage: frozenset[str] = frozenset({"digital_signature", "key_encipherment"}),
    ekus: tuple[str, ...] = (
        ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
        ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,
    ),
) -> Decision:
    return Decision(
        outcome=Outcome.APPROVED,
        reason="ok",
        profile="default",
        backend="internal",
        not_before=NOW - dt.timedelta(minutes=1),
        not_after=NOW + dt.timedelta(days=90),
        subject=subject,
        sans=sans,
        key_usage=key_usage,
        extended_key_usage=ekus,
    )


def cn(value: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org"),
            x509.NameAttribute(NameOID.COMMON_NAME, value),
        ]
    )


SERVER_SANS = (
    Identifier(IdentifierType.DNS, "device.example.com"),
    Identifier(IdentifierType.DNS, "www.device.example.com"),
    Identifier(IdentifierType.IP, "192.0.2.10"),
    Identifier(IdentifierType.IP, "2001:db8::10"),
)

LEAVES: dict[str, tuple[str, Callable[[], Decision]]] = {
    "ec-p256-server": ("p256", lambda: decision(cn("device.example.com"), SERVER_SANS)),
    "ec-p384-server": ("p384", lambda: decision(cn("device.example.com"), SERVER_SANS)),
    "rsa-server": ("rsa", lambda: decision(cn("device.example.com"), SERVER_SANS)),
    "ed25519-client": (
        "ed25519",
        lambda: decision(
            cn("device-17"),
            (Identifier(IdentifierType.URI, "https://devices.example.com/17"),),
            ekus=(ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,),
        ),
    ),
    "empty-subject-ec": ("p256", lambda: decision(x509.Name([]), SERVER_SANS[:1])),
    "empty-subject-rsa": ("rsa", lambda: decision(x509.Name([]), SERVER_SANS)),
    "email-rsa": (
        "rsa",
        lambda: decision(
            cn("Jane Doe"),
            (Identifier(IdentifierType.EMAIL, "jane.doe@example.com"),),
            key_usage=frozenset({"digital_signature", "content_commitment", "key_encipherment"}),
            ekus=(ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string,),
        ),
    ),
    "no-eku-ec": ("p256", lambda: decision(cn("device.example.com"), SERVER_SANS, ekus=())),
}


# -- certificates -----------------------------------------------------------------------------


def test_root_certificate(ca: InternalCa, tmp_path: Path) -> None:
    lint_certificate(ca.root_certificate, tmp_path / "root.der")


def test_issuing_ca_certificate(ca: InternalCa, tmp_path: Path) -> None:
    lint_certificate(ca.active_issuer().certificate, tmp_path / "issuer.der")


@pytest.mark.parametrize("case", sorted(LEAVES))
def test_leaf_certificate(ca: InternalCa, tmp_path: Path, case: str) -> None:
    kind, make_decision = LEAVES[case]
    issued = enroll(ca, make_key(kind), make_decision())
    lint_certificate(issued.certificate, tmp_path / "leaf.der")


def test_tls_server_certificate(ca: InternalCa, tmp_path: Path) -> None:
    certificate = issue_tls_server_cert(
        ca, ["gatehouse.example.com"], ["127.0.0.1"], tmp_path / "k.pem", tmp_path / "c.pem"
    )
    lint_certificate(certificate, tmp_path / "tls.der")


def test_linter_catches_a_bad_certificate(tmp_path: Path) -> None:
    """The harness is not vacuous: a non-critical SAN with an empty subject is an ERROR."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(cn("Some CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("bad.example.com")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "bad.der"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    result = pkilint("lint_pkix_cert", "lint", "-s", "ERROR", str(path))
    assert result.returncode != 0
    assert "pkix.san_extension_not_critical_empty_subject" in result.stdout


# -- CRL and OCSP -----------------------------------------------------------------------------


def test_crl(ca: InternalCa, tmp_path: Path) -> None:
    revoked = [
        RevokedEntry("4a0b" * 8, NOW - dt.timedelta(hours=1), RevocationReason.KEY_COMPROMISE),
        RevokedEntry("5c1d" * 8, NOW - dt.timedelta(hours=1), RevocationReason.UNSPECIFIED),
        RevokedEntry("6e2f" * 8, NOW - dt.timedelta(hours=1), RevocationReason.SUPERSEDED),
    ]
    issuer_id = ca.active_issuer().id
    der = ca.sign_crl(issuer_id, revoked, 7, NOW, NOW + ca.crl_validity)
    assert_clean("lint_crl", der, tmp_path / "crl.der", "-t", "CRL", "-p", "PKIX")
    empty = ca.sign_crl(issuer_id, [], 8, NOW, NOW + ca.crl_validity)
    assert_clean("lint_crl", empty, tmp_path / "empty.der", "-t", "CRL", "-p", "PKIX")


@pytest.mark.parametrize("status", ["good", "revoked", "unknown"])
def test_ocsp_response(ca: InternalCa, tmp_path: Path, status: str) -> None:
    issued = enroll(ca, make_key("p256"), decision(cn("device.example.com"), SERVER_SANS))
    issuer = ca.active_issuer()
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(issued.certificate, issuer.certificate, hashes.SHA1())
        .add_extension(x509.OCSPNonce(secrets.token_bytes(32)), critical=False)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    entry = RevokedEntry(
        issued.serial, NOW - dt.timedelta(hours=1), RevocationReason.KEY_COMPROMISE
    )
    der = ca.sign_ocsp(
        issuer.id,
        request,
        lambda serial: (status, entry if status == "revoked" else None),
        NOW,
        NOW + ca.ocsp_validity,
    )
    assert_clean("lint_ocsp_response", der, tmp_path / "ocsp.der")
