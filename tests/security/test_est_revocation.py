"""Rule 6: EST fullcmc revocation compares principal kind, id *and* profile.

Rule 2: a client-certificate principal is its certificate's SHA-256, not its serial:
two manufacturer anchors on one profile may both issue serial 4242, and neither device
may revoke (or share the rate limit of) the other.

EST user names are unique only within a profile: a user ``device1`` on profile ``b``
must not revoke the certificate user ``device1`` of profile ``default`` enrolled.  Driven
over the real server: a certificate enrolled with curl + openssl, a CMC revokeRequest
(RFC 5272 §6.11) posted to ``/fullcmc`` with HTTP Basic, as EST clients revoke.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.est import cmc
from tests.e2e.test_est_cmc import _pki_data, _signed, _statuses, _tcr
from tests.security.conftest import profile_like_default, start_configured
from tests.support.est import TestCa, curl, est_url, openssl_csr, pkcs7_to_pem, write_key
from tests.support.pki import make_csr
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e

PASSWORDS = {"default": secrets.token_urlsafe(12), "b": secrets.token_urlsafe(12)}
# Two manufacturers' IDevID CAs, both anchors of profile "devices".
MAKERS = (TestCa.create("Maker One IDevID CA"), TestCa.create("Maker Two IDevID CA"))


def _edit(config: dict[str, Any], data_dir: Path) -> None:
    profile_like_default(config, "b", est={"label": "b"})
    anchors = []
    for number, maker in enumerate(MAKERS):
        (data_dir / f"maker{number}.pem").write_bytes(maker.pem())
        anchors.append(f"maker{number}.pem")
    profile_like_default(config, "devices", est={"label": "devices",
                                                 "client_cert_anchors": anchors})


def _users(data_dir: Path) -> None:
    for profile, password in PASSWORDS.items():
        run_cli(["user", "add", profile, "device1"], data_dir, stdin=password + "\n")


@pytest.fixture(scope="module")
def est(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    server = start_configured(tmp_path_factory, "est-revocation", _edit, setup=_users)
    yield server
    server.stop()


def _label(profile: str) -> str | None:
    return None if profile == "default" else profile


def _enroll(server: GatehouseServer, tmp: Path, name: str,
            profile: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """device1 of ``profile`` enrolls a certificate with HTTP Basic."""
    csr = openssl_csr(tmp, name, f"{name}.example.test")
    status, _, body = curl("--cacert", str(server.root_pem), "-u",
                           f"device1:{PASSWORDS[profile]}", "-H",
                           "Content-Type: application/pkcs10", "--data-binary", f"@{csr}",
                           est_url(server, "simpleenroll", _label(profile)))
    assert status == 200, body
    cert = x509.load_pem_x509_certificates(pkcs7_to_pem(body, tmp, name).read_bytes())[0]
    key = load_pem_private_key((tmp / f"{name}.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _revoke(server: GatehouseServer, profile: str, victim: x509.Certificate,
            signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], *,
            tls_client: tuple[Path, Path] | None = None,
            enroll: x509.CertificateSigningRequest | None = None) -> tuple[int, int | None]:
    """device1 of ``profile`` (or, with ``tls_client``, that certificate alone) asks
    /fullcmc to revoke ``victim``; (CMC status, failInfo) of the revokeRequest."""
    revoke = cmc.RevokeRequest({
        "issuer_name": asn1_x509.Certificate.load(victim.public_bytes(Encoding.DER)).issuer,
        "serial_number": victim.serial_number, "reason": 1})
    requests = [_tcr(8, enroll)] if enroll is not None else []
    message = _signed(_pki_data([cmc.tagged_attribute(7, cmc.OID_REVOKE_REQUEST, revoke)],
                                requests), signer[1], signer[0])
    context = ssl.create_default_context(cafile=str(server.root_pem))
    if tls_client is not None:
        context.load_cert_chain(str(tls_client[0]), str(tls_client[1]))
    response = httpx.post(
        est_url(server, "fullcmc", _label(profile)), content=base64.encodebytes(message),
        headers={"Content-Type": "application/pkcs7-mime; smime-type=CMC-request"},
        auth=None if tls_client else ("device1", PASSWORDS[profile]), timeout=30,
        verify=context)
    if response.status_code != 200:
        return response.status_code, None

    # The response signature is tested in tests/e2e/test_est_cmc.py; read it here.
    info = cms.ContentInfo.load(base64.b64decode(response.content))
    content = info["content"]["encap_content_info"]["content"].native
    statuses = _statuses(cmc.PKIResponse.load(content))
    if enroll is not None:
        assert statuses[1] == (2, [8], int(cmc.CMCFailInfo.BAD_IDENTITY)), statuses
    status, parts, fail = statuses[0]
    assert parts == [7]
    return status, fail


def _status(server: GatehouseServer, cert: x509.Certificate) -> str:
    shown = run_cli(["certs", "show", format(cert.serial_number, "x")], server.data_dir).stdout
    return str(json.loads(shown.split("-----BEGIN", 1)[0])["status"])


def test_same_user_name_on_another_profile_cannot_revoke(est: GatehouseServer,
                                                         tmp_path: Path) -> None:
    victim = _enroll(est, tmp_path, "victim", "default")
    attacker = _enroll(est, tmp_path, "attacker", "b")
    # device1 of profile b, signing with its own certificate, on its own label.
    status, fail = _revoke(est, "b", victim[0], attacker)
    assert (status, fail) == (2, int(cmc.CMCFailInfo.BAD_IDENTITY))
    assert _status(est, victim[0]) == "valid"
    # Positive controls: each device1 revokes its own profile's certificate.
    assert _revoke(est, "b", attacker[0], attacker) == (0, None)
    assert _status(est, attacker[0]) == "revoked"
    assert _revoke(est, "default", victim[0], victim) == (0, None)
    assert _status(est, victim[0]) == "revoked"


def test_a_certificate_revokes_itself_only_on_its_own_profile(est: GatehouseServer,
                                                              tmp_path: Path) -> None:
    cert, key = _enroll(est, tmp_path, "self", "default")
    tls = (tmp_path / "self.pem", tmp_path / "self.key")
    # Presented to another profile's /fullcmc it authenticates nothing (EST 403).
    assert _revoke(est, "b", cert, (cert, key), tls_client=tls)[0] == 403
    assert _status(est, cert) == "valid"
    # On its own profile it revokes itself; an enrollment in the same message is refused
    # (a gateway-issued certificate does not authenticate enrollment, rule 2).
    csr, _ = make_csr("more.example.test")
    assert _revoke(est, "default", cert, (cert, key), tls_client=tls, enroll=csr) == (0, None)
    assert _status(est, cert) == "revoked"


def _idevid(maker: TestCa, cn: str, serial: int, tmp: Path,
            name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path, Path]:
    """A device certificate from ``maker`` with a chosen serial number."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(maker.cert.subject).public_key(key.public_key())
            .serial_number(serial).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                maker.key.public_key()), critical=False)
            .sign(maker.key, hashes.SHA256()))
    pem = tmp / f"{name}.pem"
    pem.write_bytes(cert.public_bytes(Encoding.PEM))
    return cert, key, pem, write_key(tmp, name, key)


def test_devices_with_the_same_serial_are_different_principals(est: GatehouseServer,
                                                               tmp_path: Path) -> None:
    x_cert, x_key, x_pem, x_key_path = _idevid(MAKERS[0], "x.devices.example.test", 4242,
                                               tmp_path, "idevid-x")
    y_cert, y_key, y_pem, y_key_path = _idevid(MAKERS[1], "y.devices.example.test", 4242,
                                               tmp_path, "idevid-y")
    assert x_cert.serial_number == y_cert.serial_number
    # Device X enrolls with its IDevID over mTLS.
    csr = openssl_csr(tmp_path, "x-ldevid", "x.devices.example.test")
    status, _, body = curl("--cacert", str(est.root_pem), "--cert", str(x_pem), "--key",
                           str(x_key_path), "-H", "Content-Type: application/pkcs10",
                           "--data-binary", f"@{csr}", est_url(est, "simpleenroll", "devices"))
    assert status == 200, body
    victim = x509.load_pem_x509_certificates(
        pkcs7_to_pem(body, tmp_path, "x-ldevid").read_bytes())[0]
    # Device Y, same serial from the other manufacturer, may not revoke it.
    status, fail = _revoke(est, "devices", victim, (y_cert, y_key), tls_client=(y_pem, y_key_path))
    assert (status, fail) == (2, int(cmc.CMCFailInfo.BAD_IDENTITY))
    assert _status(est, victim) == "valid"
    # Positive control: device X revokes the certificate it enrolled.
    assert _revoke(est, "devices", victim, (x_cert, x_key),
                   tls_client=(x_pem, x_key_path)) == (0, None)
    assert _status(est, victim) == "revoked"
