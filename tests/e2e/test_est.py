"""EST (RFC 7030) against `gatehouse up`, driven by curl + openssl exactly as a device is."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.conftest import openssl
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
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e

EXTRA = TestCa.create("Extra Device CA")


@pytest.fixture(scope="module")
def est(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    data_dir = tmp_path_factory.mktemp("est") / "gatehouse-data"
    server = start_est_server(data_dir, EXTRA)
    yield server
    server.stop()


def _enroll(server: GatehouseServer, tmp: Path, name: str, cn: str,
            label: str | None = None) -> Path:
    csr = openssl_csr(tmp, name, cn)
    status, headers, body = curl("--cacert", str(server.root_pem), "-u", f"dev:{PASSWORD}",
                                 "-H", "Content-Type: application/pkcs10",
                                 "--data-binary", f"@{csr}", est_url(server, "simpleenroll", label))
    assert status == 200, body
    assert headers["content-type"].startswith("application/pkcs7-mime")
    return pkcs7_to_pem(body, tmp, name)


def _leaf(pem_path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(pem_path.read_bytes())[0]


def test_cacerts_bootstrap_without_trust_then_verify_fingerprint(est: GatehouseServer,
                                                                 tmp_path: Path) -> None:
    # RFC 7030 §4.1.1: no trust anchor yet (-k), no client authentication.
    status, headers, body = curl("-k", est_url(est, "cacerts"))
    assert status == 200
    assert headers["content-type"].startswith("application/pkcs7-mime")
    assert headers["content-transfer-encoding"] == "base64"
    pem = pkcs7_to_pem(body, tmp_path, "cacerts")
    certs = x509.load_pem_x509_certificates(pem.read_bytes())
    root = x509.load_pem_x509_certificate(est.root_pem.read_bytes())
    assert root in certs and len(certs) == 2
    # The out-of-band check: the fingerprint `gatehouse ca show` prints.
    shown = run_cli(["ca", "show"], est.data_dir).stdout
    fingerprint = openssl("x509", "-in", str(est.root_pem), "-noout", "-fingerprint",
                          "-sha256").split("=", 1)[1].strip()
    assert fingerprint in shown
    # `gatehouse est show` tells the operator the URLs.
    shown = run_cli(["est", "show"], est.data_dir).stdout
    assert "/.well-known/est/iot/" in shown and "approval: manual" in shown
    # The labelled path serves the same chain.
    assert curl("-k", est_url(est, "cacerts", "iot"))[0] == 200
    assert curl("-k", est_url(est, "cacerts", "nope"))[0] == 404


def test_simpleenroll_with_basic_then_reenroll_with_the_issued_cert(est: GatehouseServer,
                                                                    tmp_path: Path) -> None:
    cert_pem = _enroll(est, tmp_path, "dev1", "dev1.example.test")
    chain = x509.load_pem_x509_certificates(cert_pem.read_bytes())
    assert len(chain) == 1
    leaf = chain[0]
    assert leaf.subject.rfc4514_string() == "CN=dev1.example.test"
    status, _, body = curl("--cacert", str(est.root_pem), est_url(est, "cacerts"))
    issuer_pem = pkcs7_to_pem(body, tmp_path, "ca")
    assert "OK" in openssl("verify", "-CAfile", str(est.root_pem), "-untrusted",
                           str(issuer_pem), str(cert_pem))

    # simplereenroll, same key: authenticated by the certificate being renewed.
    renew_csr = openssl_csr(tmp_path, "renew", "dev1.example.test", key="dev1.key")
    status, _, body = curl("--cacert", str(est.root_pem), "--cert", str(cert_pem),
                           "--key", str(tmp_path / "dev1.key"),
                           "-H", "Content-Type: application/pkcs10",
                           "--data-binary", f"@{renew_csr}", est_url(est, "simplereenroll"))
    assert status == 200, body
    renewed = _leaf(pkcs7_to_pem(body, tmp_path, "renewed"))
    assert renewed.serial_number != leaf.serial_number
    assert renewed.public_key() == leaf.public_key()
    shown = run_cli(["certs", "show", format(renewed.serial_number, "x")], est.data_dir).stdout
    assert f'"replaces": "{format(leaf.serial_number, "x")}"' in shown
    assert '"protocol": "est"' in shown

    # Rekey: a new key, still authenticated by the (renewed) certificate.
    rekey_csr = openssl_csr(tmp_path, "rekey", "dev1.example.test")
    status, _, body = curl("--cacert", str(est.root_pem), "--cert",
                           str(tmp_path / "renewed.pem"), "--key", str(tmp_path / "dev1.key"),
                           "-H", "Content-Type: application/pkcs10",
                           "--data-binary", f"@{rekey_csr}", est_url(est, "simplereenroll"))
    assert status == 200, body
    rekeyed = _leaf(pkcs7_to_pem(body, tmp_path, "rekeyed"))
    assert rekeyed.public_key() != leaf.public_key()

    # RFC 7030 §4.2.2: the subject must match unless the profile allows a change.
    other = openssl_csr(tmp_path, "other", "someone-else.example.test", key="rekey.key")
    status, _, body = curl("--cacert", str(est.root_pem), "--cert",
                           str(tmp_path / "rekeyed.pem"), "--key", str(tmp_path / "rekey.key"),
                           "-H", "Content-Type: application/pkcs10",
                           "--data-binary", f"@{other}", est_url(est, "simplereenroll"))
    assert status == 403 and b"subject must match" in body

    # Without a client certificate re-enrollment is refused with 401.
    status, headers, _ = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}",
                              "-H", "Content-Type: application/pkcs10",
                              "--data-binary", f"@{renew_csr}", est_url(est, "simplereenroll"))
    assert status == 401 and "www-authenticate" in headers


@pytest.mark.parametrize("variant", ["one-line", "cte-header", "crlf"])
def test_base64_variants_are_accepted(est: GatehouseServer, tmp_path: Path,
                                      variant: str) -> None:
    csr = openssl_csr(tmp_path, "v", f"{variant}.example.test")
    text = csr.read_bytes()
    headers = ["-H", "Content-Type: application/pkcs10"]
    if variant == "one-line":
        text = b"".join(text.split())
    elif variant == "cte-header":
        headers += ["-H", "Content-Transfer-Encoding: base64"]
    else:
        text = text.replace(b"\n", b"\r\n")
    csr.write_bytes(text)
    status, _, body = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}", *headers,
                           "--data-binary", f"@{csr}", est_url(est, "simpleenroll"))
    assert status == 200, body


def test_bad_input_gets_the_right_client_error(est: GatehouseServer, tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "bad", "bad.example.test")
    base = ["--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}"]
    url = est_url(est, "simpleenroll")

    def post(data: bytes, content_type: str = "application/pkcs10",
             auth: list[str] | None = None) -> tuple[int, dict[str, str], bytes]:
        body = tmp_path / "body"
        body.write_bytes(data)
        args = [*(base if auth is None else ["--cacert", str(est.root_pem), *auth]),
                "-H", f"Content-Type: {content_type}", "--data-binary", f"@{body}", url]
        return curl(*args)

    status, _, body = post(csr.read_bytes(), "application/x-www-form-urlencoded")
    assert status == 415 and b"application/pkcs10" in body
    status, _, body = post(b"this is not base64!!")
    assert status == 400 and body.count(b"\n") == 1
    status, _, body = post(base64.b64encode(b"\x30\x03\x02\x01\x01"))
    assert status == 400 and b"CSR" in body
    der = bytearray((tmp_path / "bad.der").read_bytes())
    der[-5] ^= 0x55  # inside the signature
    status, _, body = post(base64.b64encode(bytes(der)))
    assert status == 400 and b"signature" in body
    status, _, body = post(b"A" * 400_000)
    assert status == 413
    status, headers, _ = post(csr.read_bytes(), auth=[])
    assert status == 401 and headers["www-authenticate"].startswith("Basic realm=")
    status, headers, _ = post(csr.read_bytes(), auth=["-u", "dev:wrong-password"])
    assert status == 401 and "www-authenticate" in headers
    # Policy denial: P-521 is not among the default profile's curves.
    p521 = openssl_csr(tmp_path, "p521", "p521.example.test", curve="P-521")
    status, _, body = post(p521.read_bytes())
    assert status == 403 and b"P-521" in body
    # Unknown label, wrong method.
    assert curl("--cacert", str(est.root_pem), est_url(est, "simpleenroll", "nope"))[0] == 404
    assert curl("--cacert", str(est.root_pem), url)[0] == 405


def test_manual_approval_202_then_approve_then_repost_gets_200(est: GatehouseServer,
                                                               tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "held", "held.example.test")
    args = ["--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}",
            "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{csr}",
            est_url(est, "simpleenroll", "iot")]
    status, headers, body = curl(*args)
    assert status == 202 and int(headers["retry-after"]) > 0
    request_id = re.search(rb"request (\S+) is held", body)
    assert request_id is not None
    # Re-posting before approval: still 202, the same request (no duplicate).
    status, _, body2 = curl(*args)
    assert status == 202 and request_id.group(1) in body2
    listed = run_cli(["requests", "list", "--state", "held", "--profile", "iot"],
                     est.data_dir).stdout
    assert listed.count(request_id.group(1).decode()) == 1
    run_cli(["requests", "approve", request_id.group(1).decode()], est.data_dir)
    status, _, body = curl(*args)
    assert status == 200, body
    assert _leaf(pkcs7_to_pem(body, tmp_path, "held")).subject.rfc4514_string() == \
        "CN=held.example.test"


def test_csrattrs_from_the_profile_and_204_without(est: GatehouseServer, tmp_path: Path) -> None:
    status, _, _ = curl("--cacert", str(est.root_pem), est_url(est, "csrattrs"))
    assert status == 204
    status, headers, body = curl("--cacert", str(est.root_pem), est_url(est, "csrattrs", "iot"))
    assert status == 200 and headers["content-type"] == "application/csrattrs"
    der = subprocess.run(["base64", "-d"], input=body, capture_output=True, check=True).stdout
    (tmp_path / "attrs.der").write_bytes(der)
    parsed = openssl("asn1parse", "-inform", "DER", "-in", str(tmp_path / "attrs.der"))
    assert "id-ecPublicKey" in parsed and "prime256v1" in parsed
    assert "X509v3 Subject Alternative Name" in parsed
    status, _, body = curl("--cacert", str(est.root_pem), est_url(est, "csrattrs", "bound"))
    der = subprocess.run(["base64", "-d"], input=body, capture_output=True, check=True).stdout
    (tmp_path / "bound.der").write_bytes(der)
    assert "challengePassword" in openssl("asn1parse", "-inform", "DER", "-in",
                                          str(tmp_path / "bound.der"))


def test_serverkeygen_returns_key_and_matching_certificate(est: GatehouseServer,
                                                           tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "skg", "skg.example.test")
    status, headers, body = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}",
                                 "-H", "Content-Type: application/pkcs10",
                                 "--data-binary", f"@{csr}", est_url(est, "serverkeygen"))
    assert status == 200, body
    match = re.match(r"multipart/mixed; boundary=(\S+)", headers["content-type"])
    assert match
    parts = _multipart(body, match.group(1))
    assert [p[0] for p in parts] == ["application/pkcs8",
                                     "application/pkcs7-mime; smime-type=certs-only"]
    (tmp_path / "key.der").write_bytes(base64.b64decode(b"".join(parts[0][1].split())))
    key_pem = openssl("pkey", "-inform", "DER", "-in", str(tmp_path / "key.der"))
    (tmp_path / "key.pem").write_text(key_pem)
    cert_pem = pkcs7_to_pem(parts[1][1].replace(b"\r\n", b"\n"), tmp_path, "skg-cert")
    cert = _leaf(cert_pem)
    assert cert.subject.rfc4514_string() == "CN=skg.example.test"
    key_pub = openssl("pkey", "-in", str(tmp_path / "key.pem"), "-pubout")
    cert_pub = openssl("x509", "-in", str(cert_pem), "-noout", "-pubkey")
    assert key_pub == cert_pub
    # The server-made key differs from the CSR's.
    csr_pub = openssl("pkey", "-in", str(tmp_path / "skg.key"), "-pubout")
    assert csr_pub != key_pub
    # Manual-approval profiles cannot hold a server-generated key.
    status, _, body = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}",
                           "-H", "Content-Type: application/pkcs10",
                           "--data-binary", f"@{csr}", est_url(est, "serverkeygen", "iot"))
    assert status == 403 and b"manual approval" in body


def _multipart(body: bytes, boundary: str) -> list[tuple[str, bytes]]:
    out = []
    for chunk in body.split(f"--{boundary}".encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        content_type = next(line.split(b":", 1)[1].strip().decode()
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-type"))
        out.append((content_type, content))
    return out


def test_both_auth_profile_needs_password_and_certificate(est: GatehouseServer,
                                                          tmp_path: Path) -> None:
    # The client certificate comes from the profile's anchor (a device CA).
    device_cert, device_key = EXTRA.issue("both.example.test")
    cert = tmp_path / "both.pem"
    cert.write_bytes(device_cert.public_bytes(Encoding.PEM))
    write_key(tmp_path, "both", device_key)
    csr = openssl_csr(tmp_path, "both2", "both2.example.test")
    url = est_url(est, "simpleenroll", "strict")
    common = ["--cacert", str(est.root_pem), "-H", "Content-Type: application/pkcs10",
              "--data-binary", f"@{csr}", url]
    assert curl("-u", f"dev:{PASSWORD}", *common)[0] == 401
    assert curl("--cert", str(cert), "--key", str(tmp_path / "both.key"), *common)[0] == 401
    status, _, body = curl("-u", f"dev:{PASSWORD}", "--cert", str(cert), "--key",
                           str(tmp_path / "both.key"), *common)
    assert status == 200, body
    assert x509.load_pem_x509_certificates(pkcs7_to_pem(body, tmp_path, "b").read_bytes())[0] \
        .public_bytes(Encoding.DER)
