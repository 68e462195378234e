"""The core, as a user drives it: `gatehouse up`, real TLS, the CLI, openssl as the client."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.e2e.conftest import openssl
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e


def test_up_serves_https_chaining_to_the_trust_anchor(server: GatehouseServer) -> None:
    context = ssl.create_default_context(cafile=str(server.root_pem))
    for name in ("127.0.0.1", "localhost"):
        host = "127.0.0.1"
        with socket.create_connection((host, server.https_port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    trust = ssl.create_default_context(cafile=str(server.root_pem))
    response = httpx.get(f"{server.https_url}/readyz", verify=trust)
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["checks"]["backend:internal"]["ok"] is True
    log = server.log()
    assert "trust anchor" in log and str(server.root_pem) in log
    root = x509.load_pem_x509_certificate(server.root_pem.read_bytes())
    from gateway.setup import fingerprint

    assert fingerprint(root) in log
    # The CA keys are encrypted at rest.
    key_text = (server.data_dir / "ca" / "root.key").read_text()
    assert "ENCRYPTED PRIVATE KEY" in key_text


def test_manual_issue_then_revoke_shows_in_crl_and_ocsp(server: GatehouseServer,
                                                        tmp_path: Path) -> None:
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "key.pem", "-out", "csr.pem", "-subj", "/CN=web.example.test",
            "-addext", "subjectAltName=DNS:web.example.test,IP:192.0.2.10", cwd=tmp_path)
    run_cli(["certs", "issue", "--profile", "default", "--csr", str(tmp_path / "csr.pem"),
             "--out", str(tmp_path / "chain.pem")], server.data_dir)
    pems = (tmp_path / "chain.pem").read_text().split("-----END CERTIFICATE-----")
    (tmp_path / "leaf.pem").write_text(pems[0] + "-----END CERTIFICATE-----\n")
    (tmp_path / "issuer.pem").write_text(pems[1].lstrip() + "-----END CERTIFICATE-----\n")
    verified = openssl("verify", "-CAfile", str(server.root_pem), "-untrusted",
                       str(tmp_path / "issuer.pem"), str(tmp_path / "leaf.pem"))
    assert "OK" in verified
    leaf = x509.load_pem_x509_certificate((tmp_path / "leaf.pem").read_bytes())
    serial = format(leaf.serial_number, "x")
    ocsp_url = f"{server.http_url}/ocsp/internal"
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert any(d.access_location.value == ocsp_url for d in aia)

    def ocsp_status() -> str:
        return openssl("ocsp", "-issuer", str(tmp_path / "issuer.pem"), "-cert",
                       str(tmp_path / "leaf.pem"), "-url", ocsp_url, "-CAfile",
                       str(server.root_pem), "-no_nonce")

    assert ": good" in ocsp_status()
    shown = run_cli(["certs", "show", serial], server.data_dir).stdout
    assert json.loads(shown.split("-----BEGIN")[0])["status"] == "valid"

    run_cli(["certs", "revoke", serial, "--reason", "keyCompromise"], server.data_dir)
    status = ocsp_status()
    assert ": revoked" in status and "Reason: keyCompromise" in status

    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    crl_url = cdp[0].full_name[0].value  # type: ignore[index]
    assert crl_url.startswith(server.http_url)
    crl_der = httpx.get(crl_url).content
    (tmp_path / "crl.der").write_bytes(crl_der)
    (tmp_path / "cas.pem").write_text((tmp_path / "issuer.pem").read_text()
                                      + server.root_pem.read_text())
    text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-CAfile",
                   str(tmp_path / "cas.pem"), "-noout", "-text")
    assert "verify OK" in text
    assert serial.upper().zfill(len(serial) + len(serial) % 2) in text.replace(":", "").upper()
    assert "Key Compromise" in text
    # The CLI shows the same CRL.
    cli_crl = run_cli(["crl"], server.data_dir).stdout
    assert x509.load_pem_x509_crl(cli_crl.encode()).get_revoked_certificate_by_serial_number(
        leaf.serial_number) is not None


def test_cli_bad_inputs_are_one_line_errors(server: GatehouseServer, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.csr"
    garbage.write_bytes(b"this is not a CSR")
    result = run_cli(["certs", "issue", "--csr", str(garbage)], server.data_dir, check=False)
    assert result.returncode == 1 and "not valid base64" in result.stderr
    assert "Traceback" not in result.stderr
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "k.pem", "-out", "c.pem", "-subj", "/CN=x.test", cwd=tmp_path)
    unknown = run_cli(["certs", "issue", "--profile", "nope", "--csr", str(tmp_path / "c.pem")],
                      server.data_dir, check=False)
    assert unknown.returncode == 1 and "unknown profile 'nope'" in unknown.stderr
    weak = subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout",
                           "w.key", "-out", "w.csr", "-subj", "/CN=weak.test"], cwd=tmp_path,
                          capture_output=True, check=True)
    assert weak.returncode == 0
    refused = run_cli(["certs", "issue", "--csr", str(tmp_path / "w.csr")], server.data_dir,
                      check=False)
    assert refused.returncode == 1 and "RSA key of 1024 bits" in refused.stderr
    explain = run_cli(["policy", "explain", "--csr", str(tmp_path / "c.pem")], server.data_dir)
    assert "decision: approved" in explain.stdout and "CSR signature verifies" in explain.stdout


def test_killed_between_persist_and_issue_completes_on_restart(tmp_path: Path) -> None:
    """SIGKILL while the backend call is in flight; the restarted server finishes it."""
    data_dir = tmp_path / "crash-data"
    run_cli(["init"], data_dir)
    marker = tmp_path / "hang.marker"
    config = (data_dir / "gatehouse.yaml").read_text()
    config = config.replace("backends:\n", f"backends:\n  flaky:\n    type: test-hang-once\n"
                                           f"    marker: {marker}\n    directory: ca\n", 1)
    config = config.replace("    backend: internal\n", "    backend: flaky\n", 1)
    config = config.replace("  max_delay: 15m\n", "  max_delay: 15m\n  lease: 2s\n"
                                                  "  poll_interval: 1s\n")
    (data_dir / "gatehouse.yaml").write_text(config)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "k.pem", "-out", "c.pem", "-subj", "/CN=crash.example.test", cwd=tmp_path)
    from tests.support.server import REPO, gatehouse_cmd

    enrolling = subprocess.Popen([*gatehouse_cmd(), "certs", "issue", "--csr",
                                  str(tmp_path / "c.pem"), "--data-dir", str(data_dir)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the backend was never called"
    enrolling.kill()  # SIGKILL between persist and issue
    enrolling.wait(10)

    listed = run_cli(["requests", "list"], data_dir).stdout
    # Persisted, not yet issued: the fast path writes nothing more until the backend answers.
    assert "received" in listed and "crash.example.test" in listed

    restarted = GatehouseServer(data_dir, command="serve").start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = run_cli(["requests", "list", "--state", "issued"], data_dir).stdout
            if "crash.example.test" in listed:
                break
            time.sleep(0.5)
        assert "crash.example.test" in listed, restarted.log()
        certs = run_cli(["certs", "list", "--subject", "crash.example.test"], data_dir).stdout
        # One certificate (one row, after the header): issued exactly once.
        rows = [line for line in certs.splitlines()[1:] if "crash.example.test" in line]
        assert len(rows) == 1, certs
    finally:
        restarted.stop()


def test_ocsp_get_oversized_bodies_and_unknown_paths(server: GatehouseServer, tmp_path: Path) -> None:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import ocsp

    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "k.pem", "-out", "c.pem", "-subj", "/CN=get.example.test", cwd=tmp_path)
    chain = run_cli(["certs", "issue", "--csr", str(tmp_path / "c.pem")], server.data_dir).stdout
    certs = x509.load_pem_x509_certificates(chain.encode())
    request = ocsp.OCSPRequestBuilder().add_certificate(certs[0], certs[1], hashes.SHA1()).build()
    encoded = base64.b64encode(request.public_bytes(Encoding.DER)).decode()
    response = httpx.get(f"{server.http_url}/ocsp/internal/{encoded}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
    # Garbage OCSP request: an OCSP malformedRequest answer, not an HTTP error.
    garbage = httpx.post(f"{server.http_url}/ocsp/internal", content=b"\x30\x03garbage",
                         headers={"content-type": "application/ocsp-request"})
    assert garbage.status_code == 200
    assert ocsp.load_der_ocsp_response(garbage.content).response_status is \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # Oversized bodies are refused before any parsing.
    big = httpx.post(f"{server.http_url}/ocsp/internal", content=b"\x00" * 300_000,
                     headers={"content-type": "application/ocsp-request"})
    assert big.status_code == 413
    assert httpx.get(f"{server.http_url}/crl/nosuch.crl").status_code == 404
    # The CA issuers URL serves the issuing CA.
    aia = certs[0].extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ca_url = next(d.access_location.value for d in aia
                  if d.access_method == x509.oid.AuthorityInformationAccessOID.CA_ISSUERS)
    assert x509.load_der_x509_certificate(httpx.get(ca_url).content) == certs[1]


def test_rollover_is_announced_then_takes_over(server: GatehouseServer) -> None:
    shown = run_cli(["ca", "show"], server.data_dir).stdout
    assert "Issuing CA 1" in shown and "next issuing CA" not in shown
    rolled = run_cli(["ca", "rollover", "--activate-in", "30d"], server.data_dir).stdout
    assert "generation 2 prepared" in rolled
    shown = run_cli(["ca", "show"], server.data_dir).stdout
    assert "next issuing CA: CN=Gatehouse Issuing CA 2" in shown
    again = run_cli(["ca", "rollover", "--activate-in", "60d"], server.data_dir, check=False)
    assert again.returncode == 1 and "already scheduled" in again.stderr


def test_bad_config_stops_start_with_file_key_and_reason(tmp_path: Path) -> None:
    data_dir = tmp_path / "bad"
    run_cli(["init"], data_dir)
    config = data_dir / "gatehouse.yaml"
    config.write_text(config.read_text().replace("approval: auto", "approval: sometimes"))
    result = run_cli(["serve"], data_dir, check=False)
    assert result.returncode == 1
    assert "gatehouse.yaml: profiles.default.approval" in result.stderr
    assert "Traceback" not in result.stderr


def test_several_internal_cas_coexist(tmp_path: Path) -> None:
    data_dir = tmp_path / "multi"
    run_cli(["init"], data_dir)
    config = data_dir / "gatehouse.yaml"
    config.write_text(config.read_text().replace(
        "backends:\n", "backends:\n  devices:\n    type: internal\n    directory: ca-devices\n"
                       "    key_type: ec-p384\n", 1))
    run_cli(["init"], data_dir)
    roots = [x509.load_pem_x509_certificate((data_dir / d / "root.pem").read_bytes())
             for d in ("ca", "ca-devices")]
    assert roots[0].public_key() != roots[1].public_key()
    shown = run_cli(["ca", "show"], data_dir).stdout
    assert "backend internal:" in shown and "backend devices:" in shown


def test_server_killed_mid_est_enrollment_answers_the_retry(tmp_path: Path) -> None:
    """SIGKILL the *server* while an EST simpleenroll waits on the backend; after a restart,
    the device's retry of the same CSR gets the certificate, issued exactly once."""
    from tests.support.est import curl, openssl_csr, pkcs7_to_pem

    data_dir = tmp_path / "est-crash"
    run_cli(["init"], data_dir)
    marker = tmp_path / "hang.marker"
    config = (data_dir / "gatehouse.yaml").read_text()
    config = config.replace("backends:\n", f"backends:\n  flaky:\n    type: test-hang-once\n"
                                           f"    marker: {marker}\n    directory: ca\n", 1)
    config = config.replace("    backend: internal\n", "    backend: flaky\n", 1)
    config = config.replace("  max_delay: 15m\n", "  max_delay: 15m\n  lease: 2s\n"
                                                  "  poll_interval: 1s\n")
    (data_dir / "gatehouse.yaml").write_text(config)
    run_cli(["user", "add", "default", "device1"], data_dir, stdin="device1-password\n")
    csr = openssl_csr(tmp_path, "dev", "crash-est.example.test")

    first = GatehouseServer(data_dir, command="serve").start()
    url = f"{first.https_url}/.well-known/est/simpleenroll"
    device = subprocess.Popen(
        ["curl", "-sS", "--cacert", str(first.root_pem), "-u", "device1:device1-password",
         "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{csr}", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), first.log()
    first.kill()  # the server dies between persist and issue
    device.wait(30)
    assert device.returncode != 0  # the device saw the connection drop

    second = GatehouseServer(data_dir, command="serve").start()
    try:
        url = f"{second.https_url}/.well-known/est/simpleenroll"
        status, _headers, body = 0, {}, b""
        for _ in range(30):  # a device retries, honouring Retry-After
            status, _headers, body = curl("--cacert", str(second.root_pem), "-u",
                                          "device1:device1-password", "-H",
                                          "Content-Type: application/pkcs10",
                                          "--data-binary", f"@{csr}", url)
            if status == 200:
                break
            assert status == 202, body
            time.sleep(1)
        assert status == 200, second.log()
        pem = pkcs7_to_pem(body, tmp_path, "got").read_bytes()
        leaf = x509.load_pem_x509_certificates(pem)[0]
        assert leaf.subject.rfc4514_string() == "CN=crash-est.example.test"
        listed = run_cli(["certs", "list", "--subject", "crash-est.example.test"], data_dir).stdout
        rows = [line for line in listed.splitlines() if "crash-est.example.test" in line]
        assert len(rows) == 1  # issued exactly once
        requests_listed = run_cli(["requests", "list"], data_dir).stdout
        rows = [line for line in requests_listed.splitlines() if "crash-est.example.test" in line]
        assert len(rows) == 1 and " issued " in rows[0]  # one request, resumed
    finally:
        second.stop()
