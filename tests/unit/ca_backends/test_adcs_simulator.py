"""The certsrv simulator is faithful: the third-party PyPI ``certsrv`` client, unchanged,
drives it through every auth scheme (requests-ntlm sends NTLM with channel bindings)."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import certsrv
import httpx
import pytest
import spnego
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.support.adcs_simulator import AdcsSimulator
from tests.support.pki import csr_pem, make_csr


@pytest.fixture(autouse=True)
def _no_env_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE override a session's verify=cafile.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(params=["basic", "ntlm", "negotiate", "cert"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AdcsSimulator]:
    server = AdcsSimulator(tmp_path / "sim", auth=request.param).start()
    yield server
    server.stop()


def client(sim: AdcsSimulator, password: str | None = None) -> certsrv.Certsrv:
    server = f"127.0.0.1:{sim.port}"
    if sim.auth == "cert":
        return certsrv.Certsrv(server, str(sim.client_cert), str(sim.client_key),
                               auth_method="cert", cafile=str(sim.root_pem))
    method = "basic" if sim.auth == "basic" else "ntlm"
    return certsrv.Certsrv(server, sim.username, password or sim.password, auth_method=method,
                           cafile=str(sim.root_pem))


def test_certsrv_library_enrolls_in_every_disposition(sim: AdcsSimulator) -> None:
    lib = client(sim)
    assert lib.check_credentials() is True
    csr, key = make_csr("lib.example.test", dns=["lib.example.test"])
    pem = lib.get_cert(csr_pem(csr).decode(), "WebServer")
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----\r\n")
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.public_key() == key.public_key()
    sim.issuer_of(cert)  # signed by the CA
    der = lib.get_cert(csr_pem(csr).decode(), "WebServer", encoding="bin")
    assert x509.load_der_x509_certificate(der).subject == cert.subject

    with pytest.raises(certsrv.CertificatePendingException) as pending:
        lib.get_cert(csr_pem(csr).decode(), "ManagerApproval")
    with pytest.raises(certsrv.CouldNotRetrieveCertificateException) as waiting:
        lib.get_existing_cert(pending.value.req_id)
    assert str(waiting.value) == "Taken Under Submission"
    sim.approve(int(pending.value.req_id))
    assert x509.load_pem_x509_certificate(lib.get_existing_cert(pending.value.req_id))

    with pytest.raises(certsrv.RequestDeniedException) as denied:
        lib.get_cert(csr_pem(csr).decode(), "DeniedTemplate")
    assert str(denied.value).startswith("Denied by Policy Module  0x80094012")
    with pytest.raises(certsrv.RequestDeniedException) as unknown:
        lib.get_cert(csr_pem(csr).decode(), "NoSuchTemplate")
    assert "not supported by the Active Directory Certificate Services policy" in str(unknown.value)

    with pytest.raises(certsrv.CertificatePendingException) as held:
        lib.get_cert(csr_pem(csr).decode(), "ManagerApproval")
    sim.deny(int(held.value.req_id))
    with pytest.raises(certsrv.CouldNotRetrieveCertificateException) as refused:
        lib.get_existing_cert(held.value.req_id)
    assert str(refused.value) == "Denied by CORP\\pkiadmin"


def test_certsrv_library_reads_ca_certificate_and_chain(sim: AdcsSimulator) -> None:
    lib = client(sim)
    assert x509.load_pem_x509_certificate(lib.get_ca_cert()) == sim.issuers[-1][0]
    chain = pkcs7.load_der_pkcs7_certificates(lib.get_chain("bin"))
    assert set(chain) == {sim.issuers[-1][0], sim.root}
    b64 = lib.get_chain("b64")
    assert b64.startswith(b"-----BEGIN CERTIFICATE-----")  # PKCS#7 under the wrong armour
    sim.renew_ca()
    assert x509.load_pem_x509_certificate(lib.get_ca_cert()) == sim.issuers[1][0]


def test_wrong_credentials_are_refused(sim: AdcsSimulator) -> None:
    if sim.auth == "cert":
        response = httpx.get(f"{sim.url}/certsrv/", verify=ssl.create_default_context(
            cafile=str(sim.root_pem)))
        assert response.status_code == 403 and "403.7" in response.text
        return
    assert client(sim, password="wrong").check_credentials() is False


def test_iis_headers_and_content_types(tmp_path: Path) -> None:
    sim = AdcsSimulator(tmp_path / "sim", auth="basic").start()
    try:
        ssl_context = ssl.create_default_context(cafile=str(sim.root_pem))
        with httpx.Client(base_url=f"{sim.url}/certsrv/", verify=ssl_context,
                          auth=(sim.username, sim.password)) as http:
            home = http.get("")
            assert home.headers["Server"] == "Microsoft-IIS/10.0"
            assert home.headers["X-Powered-By"] == "ASP.NET"
            assert home.cookies and next(iter(home.cookies)).startswith("ASPSESSIONID")
            assert http.get("certnew.cer?ReqID=CACert&Renewal=0&Enc=bin").headers[
                "Content-Type"] == "application/pkix-cert"
            assert http.get("certnew.p7b?ReqID=CACert&Renewal=0&Enc=b64").headers[
                "Content-Type"] == "application/x-pkcs7-certificates"
            assert http.get("certcrl.crl?Type=base&Renewal=0&Enc=bin").headers[
                "Content-Type"] == "application/pkix-crl"
            assert http.get("nothing.asp").status_code == 404
            unauthenticated = httpx.get(f"{sim.url}/certsrv/", verify=ssl_context)
            assert unauthenticated.status_code == 401
            assert unauthenticated.headers["WWW-Authenticate"].startswith("Basic")
    finally:
        sim.stop()


def test_ntlm_without_channel_bindings_is_refused(tmp_path: Path) -> None:
    """Extended Protection: an NTLM client that sends no bindings does not get in."""
    sim = AdcsSimulator(tmp_path / "sim", auth="ntlm").start()
    try:
        ssl_context = ssl.create_default_context(cafile=str(sim.root_pem))
        with httpx.Client(verify=ssl_context) as http:
            first = http.get(f"{sim.url}/certsrv/")
            assert first.status_code == 401 and first.headers["WWW-Authenticate"] == "NTLM"
            context = spnego.client(sim.username, sim.password, protocol="ntlm")
            negotiate = context.step()
            assert negotiate is not None
            challenge = http.get(f"{sim.url}/certsrv/", headers={
                "Authorization": "NTLM " + base64.b64encode(negotiate).decode()})
            token = base64.b64decode(challenge.headers["WWW-Authenticate"].split()[1])
            authenticate = context.step(token)
            assert authenticate is not None
            final = http.get(f"{sim.url}/certsrv/", headers={
                "Authorization": "NTLM " + base64.b64encode(authenticate).decode()})
            assert final.status_code == 401
    finally:
        sim.stop()


def test_standalone_help() -> None:
    result = subprocess.run([sys.executable, "-m", "tests.support.adcs_simulator", "--help"],
                            capture_output=True, text=True, timeout=60, check=True,
                            cwd=Path(__file__).resolve().parents[3])
    assert "--auth {basic,ntlm,negotiate,cert}" in result.stdout
    assert "approve N" in result.stdout


def test_standalone_serves_and_takes_approvals_on_stdin(tmp_path: Path) -> None:
    from tests.support.server import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.adcs_simulator", "--dir", str(tmp_path / "sim"),
         "--port", str(port), "--auth", "basic", "--password", "pw-123456"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[3])
    try:
        assert process.stdout is not None and process.stdin is not None
        banner = [process.stdout.readline() for _ in range(5)]
        assert banner[0].startswith(f"certsrv simulator at https://127.0.0.1:{port}/certsrv/")
        lib = certsrv.Certsrv(f"127.0.0.1:{port}", "CORP\\gatehouse", "pw-123456",
                              cafile=str(tmp_path / "sim" / "adcs-root.pem"))
        csr, _ = make_csr("standalone.example.test")
        with pytest.raises(certsrv.CertificatePendingException) as pending:
            lib.get_cert(csr_pem(csr).decode(), "ManagerApproval")
        process.stdin.write(f"approve {pending.value.req_id}\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == f"approved request {pending.value.req_id}"
        assert lib.get_existing_cert(pending.value.req_id).startswith(b"-----BEGIN CERTIFICATE")
    finally:
        process.terminate()
        process.wait(10)
