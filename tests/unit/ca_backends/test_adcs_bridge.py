"""The ADCS bridge against the certsrv simulator (and a MockTransport for rare pages)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from pydantic import ValidationError

from ca_backends.adcs import AdcsBackend, AdcsConfig
from ca_backends.adcs.auth import tls_server_end_point
from ca_backends.base import BackendRejected, BackendUnavailable, Unsupported
from gateway.errors import ErrorKind
from gateway.model import IssuedCertificate, Pending, RevocationReason
from tests.contract.conftest import request_and_decision
from tests.support import adcs_simulator as pages
from tests.support.adcs_simulator import AdcsSimulator


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def config(sim: AdcsSimulator, **overrides: Any) -> AdcsConfig:
    auth: dict[str, Any]
    if sim.auth == "cert":
        auth = {"method": "cert", "client_cert": str(sim.client_cert), "client_key": str(sim.client_key)}
    else:
        (sim.workdir / "password").write_text(sim.password + "\n")
        auth = {"method": sim.auth, "username": sim.username,
                "password_file": str(sim.workdir / "password")}
    entry: dict[str, Any] = {"type": "adcs", "url": sim.url, "template": "WebServer",
                             "ca_cert": str(sim.root_pem), "timeout": 5, "poll_interval": 2,
                             "auth": auth}
    entry.update(overrides)
    return AdcsConfig.model_validate(entry)


async def call(backend: AdcsBackend, method: str, *args: Any) -> Any:
    try:
        return await getattr(backend, method)(*args)
    finally:
        await backend.close()


@pytest.fixture(params=["basic", "ntlm", "negotiate", "cert"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AdcsSimulator]:
    server = AdcsSimulator(tmp_path / "sim", auth=request.param).start()
    yield server
    server.stop()


def test_issue_pending_and_denied_with_every_auth_scheme(sim: AdcsSimulator, tmp_path: Path) -> None:
    bridge = AdcsBackend("adcs", config(sim, attributes=["san:dns=web.example.test"]), tmp_path)
    request, decision = request_and_decision("web.example.test")

    async def scenario() -> None:
        issued = await bridge.issue(request, decision)
        assert isinstance(issued, IssuedCertificate)
        assert issued.backend_ref == str(max(sim.requests))
        assert [c.subject for c in map(x509.load_der_x509_certificate, issued.chain)] == [
            sim.issuers[0][0].subject, sim.root.subject]
        submitted = sim.requests[int(issued.backend_ref)]
        assert submitted.template == "WebServer" and submitted.attributes["san"] == "dns=web.example.test"
        assert submitted.requester.lower().endswith("gatehouse") or sim.auth == "cert"

        pending = await bridge.issue(request, dataclasses.replace(decision, template="ManagerApproval"))
        assert pending == Pending(pending.backend_ref, retry_after=2)
        assert await bridge.poll(pending.backend_ref) == pending
        sim.approve(int(pending.backend_ref))
        approved = await bridge.poll(pending.backend_ref)
        assert isinstance(approved, IssuedCertificate) and approved.backend_ref == pending.backend_ref

        held = await bridge.issue(request, dataclasses.replace(decision, template="ManagerApproval"))
        assert isinstance(held, Pending)
        sim.deny(int(held.backend_ref), by="CORP\\alice")
        with pytest.raises(BackendRejected) as caught:
            await bridge.poll(held.backend_ref)
        assert caught.value.detail.endswith("Denied by CORP\\alice")
        await bridge.close()

    run(scenario())
    methods = {m for m, _, _ in sim.seen}
    assert methods == {"GET", "POST"}
    posted = [form for m, path, form in sim.seen if path == "/certsrv/certfnsh.asp" and form]
    assert posted[0]["Mode"] == "newreq" and posted[0]["TargetStoreFlags"] == "0"
    assert posted[0]["SaveCert"] == "yes" and posted[0]["CertAttrib"].startswith(
        "CertificateTemplate:WebServer\r\n")


@pytest.mark.parametrize(("template", "reason"), [
    ("DeniedTemplate", "ADCS denied the request: Denied by Policy Module  0x80094012"),
    ("Nope", "not supported by the Active Directory Certificate Services policy: Nope."),
])
def test_denials_carry_the_disposition_message(tmp_path: Path, template: str, reason: str) -> None:
    sim = AdcsSimulator(tmp_path / "sim").start()
    try:
        request, decision = request_and_decision(template=template)
        with pytest.raises(BackendRejected) as caught:
            run(call(AdcsBackend("adcs", config(sim), tmp_path), "issue", request, decision))
        assert reason in caught.value.detail
    finally:
        sim.stop()


def test_unknown_request_and_bad_reference(tmp_path: Path) -> None:
    sim = AdcsSimulator(tmp_path / "sim").start()
    try:
        with pytest.raises(BackendRejected) as caught:
            run(call(AdcsBackend("adcs", config(sim), tmp_path), "poll", "4711"))
        assert "no request 4711" in caught.value.detail and "0x80094004" in caught.value.detail
        with pytest.raises(BackendRejected):
            run(call(AdcsBackend("adcs", config(sim), tmp_path), "poll", "../etc"))
    finally:
        sim.stop()


def test_wrong_password_is_unhealthy_and_unavailable(tmp_path: Path) -> None:
    sim = AdcsSimulator(tmp_path / "sim", auth="ntlm").start()
    try:
        bad = config(sim)
        (sim.workdir / "password").write_text("wrong\n")
        health = run(call(AdcsBackend("adcs", bad, tmp_path), "health"))
        assert not health.ok and "refused the gateway's ntlm credentials (HTTP 401)" in health.detail
        request, decision = request_and_decision()
        with pytest.raises(BackendUnavailable):
            run(call(AdcsBackend("adcs", bad, tmp_path), "issue", request, decision))
        missing = config(sim, auth={"method": "basic", "username": "u", "password_env": "NO_SUCH_VAR"})
        with pytest.raises(BackendUnavailable) as caught:
            run(call(AdcsBackend("adcs", missing, tmp_path), "issue", request, decision))
        assert "NO_SUCH_VAR" in caught.value.detail
    finally:
        sim.stop()


def test_ca_service_stopped_is_retryable(tmp_path: Path) -> None:
    sim = AdcsSimulator(tmp_path / "sim").start()
    try:
        sim.down = True
        request, decision = request_and_decision()
        with pytest.raises(BackendUnavailable) as caught:
            run(call(AdcsBackend("adcs", config(sim), tmp_path), "issue", request, decision))
        assert "HTTP 503" in caught.value.detail
    finally:
        sim.stop()


def test_ca_renewal_chain_follows_the_signing_ca(tmp_path: Path) -> None:
    sim = AdcsSimulator(tmp_path / "sim").start()
    try:
        request, decision = request_and_decision()
        held = run(call(AdcsBackend("adcs", config(sim), tmp_path), "issue", request,
                        dataclasses.replace(decision, template="ManagerApproval")))
        old = run(call(AdcsBackend("adcs", config(sim), tmp_path), "issue", request, decision))
        sim.renew_ca()
        new = run(call(AdcsBackend("adcs", config(sim), tmp_path), "issue", request, decision))
        chain = run(call(AdcsBackend("adcs", config(sim), tmp_path), "ca_chain"))
        assert chain == [sim.issuers[1][0], sim.root]
        old_ca, new_ca = (x509.load_der_x509_certificate(c.chain[0]) for c in (old, new))
        assert (old_ca, new_ca) == (sim.issuers[0][0], sim.issuers[1][0])
        sim.approve(int(held.backend_ref))
        late = run(call(AdcsBackend("adcs", config(sim), tmp_path), "poll", held.backend_ref))
        assert x509.load_der_x509_certificate(late.chain[0]) == sim.issuers[1][0]
        crl = x509.load_der_x509_crl(run(call(AdcsBackend("adcs", config(sim), tmp_path), "crl")))
        assert crl.is_signature_valid(sim.issuers[1][0].public_key())  # type: ignore[arg-type]
    finally:
        sim.stop()


def test_revoke_is_unsupported_with_operator_instructions(tmp_path: Path) -> None:
    cfg = AdcsConfig.model_validate({"type": "adcs", "url": "https://ca.invalid", "template": "W",
                                     "auth": {"method": "basic", "username": "u", "password_env": "P"}})
    with pytest.raises(Unsupported) as caught:
        run(call(AdcsBackend("adcs", cfg, tmp_path), "revoke", "1f2e", RevocationReason.KEY_COMPROMISE))
    assert caught.value.kind is ErrorKind.UNSUPPORTED
    assert "certutil -revoke 1f2e 1" in caught.value.detail


def mocked(tmp_path: Path, page: str, status: int = 200) -> AdcsBackend:
    cfg = AdcsConfig.model_validate({"type": "adcs", "url": "https://ca.invalid", "template": "W",
                                     "auth": {"method": "basic", "username": "u", "password_env": "P"}})
    transport = httpx.MockTransport(lambda request: httpx.Response(status, text=page))
    (tmp_path / "pw").write_text("pw")
    return AdcsBackend("adcs", cfg.model_copy(update={"auth": cfg.auth.model_copy(
        update={"password_env": None, "password_file": "pw"})}), tmp_path, transport=transport)


@pytest.mark.parametrize(("page", "status", "kind", "text"), [
    (pages.error_page("newreq", "1 - Error", "Error Parsing Request", pages.LAST_STATUS["badtag"]),
     200, ErrorKind.BACKEND_REJECTED, "Error Parsing Request"),
    (pages.error_page("newreq", "(never set)", "", "The RPC server is unavailable. 0x800706ba "
                      "(WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)"), 200, ErrorKind.BACKEND_UNAVAILABLE,
     "RPC server is unavailable"),
    ("<html>Hello</html>", 200, ErrorKind.BACKEND_UNAVAILABLE, "does not recognise"),
    ("<h2>404 - File or directory not found.</h2>", 404, ErrorKind.BACKEND_UNAVAILABLE,
     "is Web Enrollment installed"),
    ("", 500, ErrorKind.BACKEND_UNAVAILABLE, "HTTP 500"),
])
def test_rare_pages_map_to_error_kinds(tmp_path: Path, page: str, status: int, kind: ErrorKind,
                                       text: str) -> None:
    request, decision = request_and_decision()
    with pytest.raises((BackendRejected, BackendUnavailable)) as caught:
        run(call(mocked(tmp_path, page, status), "issue", request, decision))
    assert caught.value.kind is kind and text in caught.value.detail


def test_no_template_is_a_rejection(tmp_path: Path) -> None:
    cfg = AdcsConfig.model_validate({"type": "adcs", "url": "https://ca.invalid",
                                     "auth": {"method": "basic", "username": "u", "password_env": "P"}})
    request, decision = request_and_decision()
    with pytest.raises(BackendRejected) as caught:
        run(call(AdcsBackend("adcs", cfg, tmp_path), "issue", request, decision))
    assert "no certificate template" in caught.value.detail


@pytest.mark.parametrize("entry", [
    {"url": "http://ca.example"},  # credentials only over TLS
    {"auth": {"method": "basic", "username": "u"}},
    {"auth": {"method": "kerberos", "username": "u", "password_env": "P"}},
    {"attributes": ["no-colon"]},
    {"attributes": ["a:b\r\nCertificateTemplate:Admin"]},  # no attribute smuggling
])
def test_bad_config(entry: dict[str, Any]) -> None:
    base = {"type": "adcs", "url": "https://ca.example",
            "auth": {"method": "basic", "username": "u", "password_env": "P"}}
    with pytest.raises(ValidationError):
        AdcsConfig.model_validate({**base, **entry})


def test_channel_binding_hash_follows_rfc_5929(tmp_path: Path) -> None:
    sim = AdcsSimulator(tmp_path / "sim")
    tls = x509.load_pem_x509_certificates((sim.workdir / "tls.pem").read_bytes())[0]
    from cryptography.hazmat.primitives.serialization import Encoding

    assert tls_server_end_point(tls.public_bytes(Encoding.DER)) == sim.tls_server_end_point()
