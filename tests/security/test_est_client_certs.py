"""Rule 2: EST client-certificate authentication is per profile.

Attacks over the real server with curl + openssl, as a device would send them:
a certificate the gateway issued (on another profile, or by the operator's CLI) used as
the TLS client certificate for simpleenroll; re-enrollment with another profile's, a
revoked, or a foreign certificate; an anchor certificate asking for another device's
name.  Beside each refusal, the legitimate request succeeds.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.security.conftest import profile_like_default, start_configured
from tests.support.est import (
    PASSWORD,
    TestCa,
    curl,
    est_url,
    openssl_csr,
    pkcs7_to_pem,
    write_key,
)
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e

DEVICE_CA = TestCa.create("Device IDevID CA")


def _edit(config: dict[str, Any], data_dir: Path) -> None:
    (data_dir / "device-ca.pem").write_bytes(DEVICE_CA.pem())
    default = config["profiles"]["default"]
    default["est"] = {**(default.get("est") or {}), "client_cert_anchors": ["device-ca.pem"]}
    profile_like_default(config, "other", est={"label": "other"})
    profile_like_default(config, "fromanchors", est={
        "label": "fromanchors", "client_cert_anchors": ["device-ca.pem"],
        "reenroll_from_anchors": True})


def _users(data_dir: Path) -> None:
    for profile in ("default", "other"):
        run_cli(["user", "add", profile, "dev"], data_dir, stdin=PASSWORD + "\n")


@pytest.fixture(scope="module")
def est(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    server = start_configured(tmp_path_factory, "est-client-certs", _edit, setup=_users)
    yield server
    server.stop()


def _basic_enroll(server: GatehouseServer, tmp: Path, name: str, cn: str,
                  label: str | None = None) -> Path:
    """A certificate the gateway issues over EST with HTTP Basic; returns its PEM."""
    csr = openssl_csr(tmp, name, cn)
    status, _, body = curl("--cacert", str(server.root_pem), "-u", f"dev:{PASSWORD}",
                           "-H", "Content-Type: application/pkcs10", "--data-binary",
                           f"@{csr}", est_url(server, "simpleenroll", label))
    assert status == 200, body
    return pkcs7_to_pem(body, tmp, name)


def _with_cert(server: GatehouseServer, cert: Path, key: Path, csr: Path, operation: str,
               label: str | None = None) -> tuple[int, bytes]:
    status, _, body = curl("--cacert", str(server.root_pem), "--cert", str(cert),
                           "--key", str(key), "-H", "Content-Type: application/pkcs10",
                           "--data-binary", f"@{csr}", est_url(server, operation, label))
    return status, body


def _device(tmp: Path, name: str, cn: str) -> tuple[Path, Path]:
    """A device certificate from the profile's anchor (the manufacturer's CA)."""
    cert, key = DEVICE_CA.issue(cn)
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return path, write_key(tmp, name, key)


def _serial(pem: Path) -> str:
    return format(x509.load_pem_x509_certificates(pem.read_bytes())[0].serial_number, "x")


def test_gateway_issued_certificates_do_not_authenticate_simpleenroll(
        est: GatehouseServer, tmp_path: Path) -> None:
    # A certificate from another profile, got over EST with that profile's password.
    other = _basic_enroll(est, tmp_path, "other", "other.example.test", "other")
    # A certificate the operator issued on this very profile with the CLI.
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp_path / "cli.key"),
                    "-subj", "/CN=cli.example.test", "-addext",
                    "subjectAltName=DNS:cli.example.test", "-out", str(tmp_path / "cli.csr")],
                   check=True, capture_output=True, timeout=60)
    run_cli(["certs", "issue", "--profile", "default", "--csr", str(tmp_path / "cli.csr"),
             "--out", str(tmp_path / "cli.pem")], est.data_dir)
    for name, cn in (("other", "other.example.test"), ("cli", "cli.example.test")):
        cert = other if name == "other" else tmp_path / "cli.pem"
        # Its own name, and an unrelated one: both refused on simpleenroll.
        for wanted in (cn, "victim.example.test"):
            csr = openssl_csr(tmp_path, f"{name}-again", wanted, key=f"{name}.key")
            status, body = _with_cert(est, cert, tmp_path / f"{name}.key", csr,
                                      "simpleenroll")
            assert status == 403 and b"not issued by a trusted CA" in body, body
    # Positive control: a certificate from the profile's configured anchor.
    cert, key = _device(tmp_path, "device", "device.example.test")
    csr = openssl_csr(tmp_path, "device-new", "device.example.test")
    status, body = _with_cert(est, cert, key, csr, "simpleenroll")
    assert status == 200, body
    # The anchor is the default profile's only: the same device certificate is refused
    # on a profile that did not configure it.
    status, body = _with_cert(est, cert, key, csr, "simpleenroll", "other")
    assert status == 403 and b"trusts no client-certificate issuer" in body, body


def test_simplereenroll_only_with_a_current_certificate_of_the_same_profile(
        est: GatehouseServer, tmp_path: Path) -> None:
    other = _basic_enroll(est, tmp_path, "o", "o.example.test", "other")
    mine = _basic_enroll(est, tmp_path, "m", "m.example.test")
    # Another profile's certificate renews nothing here, even for its own names.
    csr = openssl_csr(tmp_path, "o-renew", "o.example.test", key="o.key")
    status, body = _with_cert(est, other, tmp_path / "o.key", csr, "simplereenroll")
    assert status == 403 and b"not issued under profile 'default'" in body, body
    # ...while on its own profile it does (positive control for the same request).
    status, body = _with_cert(est, other, tmp_path / "o.key", csr, "simplereenroll", "other")
    assert status == 200, body
    # The same profile's certificate, same names: renewed.
    csr = openssl_csr(tmp_path, "m-renew", "m.example.test", key="m.key")
    status, body = _with_cert(est, mine, tmp_path / "m.key", csr, "simplereenroll")
    assert status == 200, body
    renewed = x509.load_pem_x509_certificates(pkcs7_to_pem(body, tmp_path, "m2").read_bytes())
    assert renewed[0].subject.rfc4514_string() == "CN=m.example.test"
    # The same certificate asking for other names: refused (RFC 7030 §4.2.2).
    csr = openssl_csr(tmp_path, "m-other", "victim.example.test", key="m.key")
    status, body = _with_cert(est, mine, tmp_path / "m.key", csr, "simplereenroll")
    assert status == 403 and b"must match the certificate being renewed" in body, body
    # Revoked: refused.
    run_cli(["certs", "revoke", _serial(mine), "--reason", "keyCompromise"], est.data_dir)
    csr = openssl_csr(tmp_path, "m-late", "m.example.test", key="m.key")
    status, body = _with_cert(est, mine, tmp_path / "m.key", csr, "simplereenroll")
    assert status == 403 and b"revoked" in body, body


def test_anchor_certificate_reenrolls_only_where_the_profile_opts_in(
        est: GatehouseServer, tmp_path: Path) -> None:
    cert, key = _device(tmp_path, "idev", "idev.example.test")
    csr = openssl_csr(tmp_path, "idev-csr", "idev.example.test")
    status, body = _with_cert(est, cert, key, csr, "simplereenroll")
    assert status == 403 and b"not a certificate this gateway issued" in body, body
    status, body = _with_cert(est, cert, key, csr, "simplereenroll", "fromanchors")
    assert status == 200, body
    # Still held to the device's own names there.
    csr = openssl_csr(tmp_path, "idev-other", "victim.example.test")
    status, body = _with_cert(est, cert, key, csr, "simplereenroll", "fromanchors")
    assert status == 403 and b"not a name of the client certificate" in body, body


def test_certificate_authenticated_device_asks_only_for_its_own_names(
        est: GatehouseServer, tmp_path: Path) -> None:
    cert, key = _device(tmp_path, "device-a", "device-a.example.test")
    wrong = openssl_csr(tmp_path, "want-b", "device-b.example.test")
    status, body = _with_cert(est, cert, key, wrong, "simpleenroll")
    assert status == 403 and b"'device-b.example.test' is not a name of the client " \
        b"certificate" in body, body
    right = openssl_csr(tmp_path, "want-a", "device-a.example.test")
    status, body = _with_cert(est, cert, key, right, "simpleenroll")
    assert status == 200, body
    # The operator sees the rule and the verdict in `gatehouse policy explain`.
    common = ["policy", "explain", "--profile", "default", "--protocol", "est",
              "--auth", "client-cert", "--client-cert", str(cert), "--csr"]
    refused = run_cli([*common, str(tmp_path / "want-b.der")], est.data_dir, check=False)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "est.client_cert_names: match" in refused.stdout, refused.stdout
    approved = run_cli([*common, str(tmp_path / "want-a.der")], est.data_dir)
    assert "decision: approved" in approved.stdout
    assert "EST client-certificate names rule: match" in approved.stdout, approved.stdout
