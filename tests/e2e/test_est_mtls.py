"""EST client-certificate authentication over real TLS: refusals are EST answers (403),
not TLS alerts; a trusted reverse proxy may pass the certificate; channel binding."""

from __future__ import annotations

import base64
import http.client
import ssl
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID

from tests.support.est import (
    PASSWORD,
    TestCa,
    curl,
    est_url,
    openssl_csr,
    pkcs7_to_pem,
    start_est_server,
    write_key,
)
from tests.support.pki import make_key
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e

EXTRA = TestCa.create("Extra Device CA")


@pytest.fixture(scope="module")
def est(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    data_dir = tmp_path_factory.mktemp("est-mtls") / "gatehouse-data"
    server = start_est_server(data_dir, EXTRA, rollover=True)
    yield server
    server.stop()


def _write_cert(tmp: Path, name: str, cert: x509.Certificate) -> Path:
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return path


def _post_with_cert(server: GatehouseServer, tmp: Path, cert: Path, key: Path,
                    operation: str = "simpleenroll",
                    cn: str = "device.example.test") -> tuple[int, dict[str, str], bytes]:
    csr = openssl_csr(tmp, "req", cn, key=key.name)
    return curl("--cacert", str(server.root_pem), "--cert", str(cert), "--key", str(key),
                "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{csr}",
                est_url(server, operation))


def test_certificate_from_a_configured_anchor_authenticates(est: GatehouseServer,
                                                            tmp_path: Path) -> None:
    cert, key = EXTRA.issue("device.example.test")
    status, _, body = _post_with_cert(est, tmp_path, _write_cert(tmp_path, "ok", cert),
                                      write_key(tmp_path, "ok", key))
    assert status == 200, body


@pytest.mark.parametrize("case", ["expired", "untrusted"])
def test_bad_client_certificates_get_403_not_a_tls_alert(est: GatehouseServer, tmp_path: Path,
                                                         case: str) -> None:
    if case == "expired":
        cert, key = EXTRA.issue("device.example.test", expired=True)
        reasons = {"simpleenroll": b"expired", "simplereenroll": b"expired"}
    else:
        cert, key = TestCa.create("Rogue CA").issue("device.example.test")
        reasons = {"simpleenroll": b"not issued by a trusted CA",
                   "simplereenroll": b"not a certificate this gateway issued"}
    for operation, reason in reasons.items():
        status, _, body = _post_with_cert(est, tmp_path, _write_cert(tmp_path, case, cert),
                                          write_key(tmp_path, case, key), operation)
        assert status == 403 and reason in body, body


def test_revoked_certificate_cannot_reenroll(est: GatehouseServer, tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "rev", "rev.example.test")
    status, _, body = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}",
                           "-H", "Content-Type: application/pkcs10", "--data-binary",
                           f"@{csr}", est_url(est, "simpleenroll"))
    assert status == 200
    cert_pem = pkcs7_to_pem(body, tmp_path, "rev")
    cert = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0]
    status, _, body = _post_with_cert(est, tmp_path, cert_pem, tmp_path / "rev.key",
                                      "simplereenroll", "rev.example.test")
    assert status == 200, body  # works before the revocation
    run_cli(["certs", "revoke", format(cert.serial_number, "x"), "--reason", "keyCompromise"],
            est.data_dir)
    status, _, body = _post_with_cert(est, tmp_path, cert_pem, tmp_path / "rev.key",
                                      "simplereenroll", "rev.example.test")
    assert status == 403 and b"revoked" in body
    # Enrolling the same CSR again gives a new certificate, not the revoked one; a retry
    # converges on that same new certificate.
    serials = set()
    for _ in range(2):
        status, _, body = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}",
                               "-H", "Content-Type: application/pkcs10", "--data-binary",
                               f"@{csr}", est_url(est, "simpleenroll"))
        assert status == 200
        again = x509.load_pem_x509_certificates(
            pkcs7_to_pem(body, tmp_path, "again").read_bytes())[0]
        assert again.serial_number != cert.serial_number
        serials.add(again.serial_number)
    assert len(serials) == 1


def test_client_certificate_from_trusted_proxy_header_only(est: GatehouseServer,
                                                           tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "px", "px.example.test")
    status, _, body = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}",
                           "-H", "Content-Type: application/pkcs10", "--data-binary",
                           f"@{csr}", est_url(est, "simpleenroll"))
    cert_pem = pkcs7_to_pem(body, tmp_path, "px")
    pem = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0].public_bytes(Encoding.PEM)
    header = f"X-SSL-Client-Cert: {urllib.parse.quote(pem.decode())}"
    args = ["--cacert", str(est.root_pem), "-H", header, "-H",
            "Content-Type: application/pkcs10", "--data-binary", f"@{csr}",
            est_url(est, "simplereenroll")]
    # 127.0.0.2 is the configured proxy; 127.0.0.1 is not, so its header is ignored.
    status, _, body = curl("--interface", "127.0.0.2", *args)
    assert status == 200, body
    status, _, _ = curl("--interface", "127.0.0.1", *args)
    assert status == 401


def _bound_enroll(server: GatehouseServer, *, tls_max: ssl.TLSVersion,
                  tamper: bool = False) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(server.root_pem))
    context.maximum_version = tls_max
    conn = http.client.HTTPSConnection("127.0.0.1", server.https_port, context=context,
                                       timeout=30)
    conn.connect()
    assert isinstance(conn.sock, ssl.SSLSocket)
    unique = conn.sock.get_channel_binding("tls-unique") or b"none"
    if tamper:
        unique = bytes(b ^ 1 for b in unique)
    key = make_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cb.example.test")]))
           .add_attribute(AttributeOID.CHALLENGE_PASSWORD, base64.b64encode(unique))
           .sign(key, hashes.SHA256()))
    body = base64.b64encode(csr.public_bytes(Encoding.DER))
    auth = base64.b64encode(f"dev:{PASSWORD}".encode()).decode()
    conn.request("POST", "/.well-known/est/bound/simpleenroll", body=body,
                 headers={"Content-Type": "application/pkcs10", "Authorization": f"Basic {auth}"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def test_channel_binding_tls_unique_in_challenge_password(est: GatehouseServer) -> None:
    status, body = _bound_enroll(est, tls_max=ssl.TLSVersion.TLSv1_2)
    assert status == 200, body
    status, body = _bound_enroll(est, tls_max=ssl.TLSVersion.TLSv1_2, tamper=True)
    assert status == 403 and b"tls-unique" in body
    status, body = _bound_enroll(est, tls_max=ssl.TLSVersion.TLSv1_3)
    assert status == 403 and b"TLS 1.2" in body


def test_cacerts_announces_the_successor_issuing_ca(est: GatehouseServer, tmp_path: Path) -> None:
    status, _, body = curl("--cacert", str(est.root_pem), est_url(est, "cacerts"))
    assert status == 200
    certs = x509.load_pem_x509_certificates(pkcs7_to_pem(body, tmp_path, "ca").read_bytes())
    subjects = sorted(c.subject.rfc4514_string() for c in certs)
    assert len(certs) == 3 and subjects[0].endswith("Issuing CA 1") \
        and subjects[1].endswith("Issuing CA 2"), subjects
