"""Vault/OpenBao and ADCS backends through the whole gateway, routed by gatehouse.yaml.

A real OpenBao (``bao server -dev``) and the certsrv simulator; the gateway as a process
(``gatehouse certs issue`` and the server's retry worker) and in process (the pipeline's
``retry_due`` while a backend is down: OpenBao paused with SIGSTOP, OpenBao killed and
restarted, the simulator's listener closed and reopened).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store
from sqlalchemy import select

from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.model import (
    EnrollmentRequest,
    EnrollmentResult,
    Operation,
    Principal,
    PrincipalKind,
    Protocol,
    RequestState,
)
from gateway.runtime import Gateway
from gateway.store.requests import RequestFilter
from gateway.store.tables import AuditEventRow, RevocationRow
from tests.e2e.conftest import openssl
from tests.support.adcs_simulator import AdcsSimulator
from tests.support.openbao import OpenBao
from tests.support.pki import csr_der, csr_pem, make_csr
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    bao = OpenBao(tmp_path_factory.mktemp("bao")).start()
    bao.setup_pki()
    yield bao
    bao.stop()


@pytest.fixture(scope="module")
def adcs_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdcsSimulator]:
    sim = AdcsSimulator(tmp_path_factory.mktemp("adcs"), auth="ntlm").start()
    yield sim
    sim.stop()


def configure(data_dir: Path, bao: OpenBao, sim: AdcsSimulator, *, retry_delay: str = "1s") -> dict[str, str]:
    """gatehouse.yaml routing profiles to each backend; returns the secrets' environment."""
    (data_dir / "bao-secret-id").write_text(bao.secret_id + "\n")
    path = data_dir / "gatehouse.yaml"
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    vault_common = {"type": "vault", "url": bao.url, "mount": "pki", "ca_cert": str(bao.ca_pem),
                    "timeout": 2}
    config["backends"].update({
        "openbao": {**vault_common, "role": "gatehouse",
                    "auth": {"method": "approle", "role_id": bao.role_id,
                             "secret_id_file": "bao-secret-id"}},
        "openbao-token": {**vault_common, "role": "gatehouse",
                          "auth": {"method": "token", "token_env": "E2E_BAO_TOKEN"}},
        "openbao-cert": {**vault_common, "mode": "sign-verbatim",
                         "auth": {"method": "cert", "client_cert": str(bao.client_cert),
                                  "client_key": str(bao.client_key)}},
        "adcs": {"type": "adcs", "url": sim.url, "template": "WebServer",
                 "ca_cert": str(sim.root_pem), "timeout": 5, "poll_interval": 1,
                 "auth": {"method": "ntlm", "username": sim.username,
                          "password_env": "E2E_ADCS_PASSWORD"}},
    })
    default = config["profiles"]["default"]
    config["profiles"].update({
        "vault": {**default, "backend": "openbao"},
        "vault-narrow": {**default, "backend": "openbao", "template": "narrow"},
        "vault-token": {**default, "backend": "openbao-token"},
        "vault-verbatim": {**default, "backend": "openbao-cert"},
        "adcs": {**default, "backend": "adcs"},
        "adcs-approval": {**default, "backend": "adcs", "template": "ManagerApproval"},
        "adcs-denied": {**default, "backend": "adcs", "template": "DeniedTemplate"},
        "vault-or-adcs": {**default, "backend": "openbao-token", "fallback_backend": "adcs"},
    })
    config["retry"] = {"max_attempts": 10, "base_delay": retry_delay, "max_delay": "2s",
                       "poll_interval": "1s"}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return {"E2E_BAO_TOKEN": bao.root_token, "E2E_ADCS_PASSWORD": sim.password}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, openbao: OpenBao,
             adcs_sim: AdcsSimulator) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("gh") / "data"
    run_cli(["init"], directory)
    return directory, configure(directory, openbao, adcs_sim)


def verify_chain(pem_chain: bytes, anchor: Path, dns: str) -> list[x509.Certificate]:
    certs = x509.load_pem_x509_certificates(pem_chain)
    store = Store([x509.load_pem_x509_certificate(anchor.read_bytes())])
    verifier = (PolicyBuilder().store(store).time(dt.datetime.now(dt.UTC))
                .build_server_verifier(x509.DNSName(dns)))
    return verifier.verify(certs[0], certs[1:])


def write_csr(tmp_path: Path, cn: str) -> Path:
    csr, _ = make_csr(cn, dns=[cn])
    path = tmp_path / f"{cn}.csr"
    path.write_bytes(csr_pem(csr))
    return path


@pytest.mark.parametrize(("profile", "anchor"), [("default", "internal"), ("vault", "openbao"),
                                                  ("vault-verbatim", "openbao"), ("adcs", "adcs")])
def test_cli_issues_through_each_backend(profile: str, anchor: str, data_dir: tuple[Path, dict[str, str]],
                                         openbao: OpenBao, adcs_sim: AdcsSimulator,
                                         tmp_path: Path) -> None:
    directory, env = data_dir
    cn = f"{profile}.example.test"
    out = tmp_path / "chain.pem"
    run_cli(["certs", "issue", "--profile", profile, "--csr", str(write_csr(tmp_path, cn)),
             "--out", str(out)], directory, env=env)
    roots = {"internal": directory / "ca" / "root.pem", "openbao": openbao.root_pem,
             "adcs": adcs_sim.root_pem}
    path = verify_chain(out.read_bytes(), roots[anchor], cn)
    assert path[-1].subject == x509.load_pem_x509_certificate(roots[anchor].read_bytes()).subject
    # openssl agrees, and the inventory has it under the backend that issued it.
    (tmp_path / "leaf.pem").write_bytes(out.read_bytes().split(b"-----END CERTIFICATE-----")[0]
                                        + b"-----END CERTIFICATE-----\n")
    assert "OK" in openssl("verify", "-CAfile", str(roots[anchor]), "-untrusted", str(out),
                           str(tmp_path / "leaf.pem"))
    listing = run_cli(["certs", "list"], directory, env=env).stdout
    assert cn in listing


@pytest.mark.parametrize(("profile", "reason"), [
    ("vault-narrow", "not allowed by this role"),
    ("adcs-denied", "The permissions on the certificate template do not allow"),
])
def test_cli_shows_the_cas_refusal(profile: str, reason: str, data_dir: tuple[Path, dict[str, str]],
                                   tmp_path: Path) -> None:
    directory, env = data_dir
    result = run_cli(["certs", "issue", "--profile", profile, "--csr",
                      str(write_csr(tmp_path, "refused.other.test"))], directory, env=env, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert reason in result.stderr and "Traceback" not in result.stderr


def test_server_completes_adcs_pending_after_approval_and_readyz_shows_backends(
        data_dir: tuple[Path, dict[str, str]], adcs_sim: AdcsSimulator, tmp_path: Path) -> None:
    directory, env = data_dir
    server = GatehouseServer(directory, command="serve", env=env).start()
    try:
        context = ssl.create_default_context(cafile=str(server.root_pem))
        ready = httpx.get(f"{server.https_url}/readyz", verify=context).json()
        for name in ("internal", "openbao", "openbao-token", "openbao-cert", "adcs"):
            assert ready["checks"][f"backend:{name}"]["ok"] is True, ready
        cn = "approval.example.test"
        result = run_cli(["certs", "issue", "--profile", "adcs-approval", "--csr",
                          str(write_csr(tmp_path, cn))], directory, env=env, check=False)
        assert result.returncode == 3 and "pending" in result.stdout, result.stdout + result.stderr
        request_id = result.stdout.split()[1]
        pending = [r for r in adcs_sim.requests.values() if r.disposition == 5]
        assert pending, "the simulator holds the request for a CA manager"
        time.sleep(2.5)  # the server's retry worker polls meanwhile: still pending
        listing = run_cli(["requests", "list"], directory, env=env).stdout
        assert request_id in listing and "pending" in listing
        adcs_sim.approve(pending[-1].id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if cn in run_cli(["certs", "list"], directory, env=env).stdout:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"not issued after approval:\n{server.log()[-3000:]}")
        adcs_sim.stop()
        try:
            down = httpx.get(f"{server.https_url}/readyz", verify=context).json()
            assert down["checks"]["backend:adcs"]["ok"] is False
            assert down["checks"]["backend:adcs"]["detail"] == "unavailable"  # no URL (rule 10)
        finally:
            adcs_sim.start()
    finally:
        server.stop()


# -- outages, in process ------------------------------------------------------------------


def _request(profile: str, cn: str, transaction: str) -> EnrollmentRequest:
    csr, _ = make_csr(cn, dns=[cn])
    return EnrollmentRequest(Protocol.MANUAL, Operation.ENROLL, profile, csr, csr_der(csr),
                             Principal(PrincipalKind.ADMIN, "e2e"), transaction_id=transaction)


async def _until_final(gateway: Gateway, request_id: str, timeout: float = 30) -> EnrollmentResult:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await gateway.enrollment.retry_due()
        result = gateway.enrollment.result(request_id)
        if result.state is RequestState.ISSUED:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"request {request_id} still {gateway.enrollment.result(request_id)}")


def _pem(result: EnrollmentResult) -> bytes:
    assert result.certificate is not None
    return b"".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM)
                    for d in (result.certificate.der, *result.certificate.chain))


@pytest.fixture
def outage_dir(tmp_path: Path, openbao: OpenBao,
               adcs_sim: AdcsSimulator) -> Iterator[tuple[Path, dict[str, str]]]:
    directory = tmp_path / "data"
    run_cli(["init"], directory)
    env = configure(directory, openbao, adcs_sim)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield directory, env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _gateway(directory: Path) -> Gateway:
    return Gateway.build(load_config(directory / "gatehouse.yaml"), directory, SystemClock())


def test_openbao_paused_then_resumed_completes(outage_dir: tuple[Path, dict[str, str]],
                                               openbao: OpenBao) -> None:
    """SIGSTOP: connections hang, the 2 s timeout fires, the request waits and completes."""
    directory, _ = outage_dir

    async def scenario() -> EnrollmentResult:
        gateway = _gateway(directory)
        try:
            openbao.pause()
            try:
                first = await gateway.enrollment.submit(_request("vault-token", "paused.example.test", "p-1"))
                assert first.state is RequestState.SUBMITTED and first.retrying
                with gateway.db.session() as session:  # the detail: audit only (rule 10)
                    retries = session.scalars(select(AuditEventRow.reason).where(
                        AuditEventRow.request_id == first.request_id)).all()
                assert "timed out" not in first.reason and any("timed out" in r for r in retries)
                again = await gateway.enrollment.submit(_request("vault-token", "paused.example.test", "p-1"))
                assert again.request_id == first.request_id and again.retry_after
            finally:
                openbao.resume()
            return await _until_final(gateway, first.request_id)
        finally:
            await gateway.close()

    result = asyncio.run(scenario())
    verify_chain(_pem(result), openbao.root_pem, "paused.example.test")


def test_openbao_killed_then_restarted_completes(outage_dir: tuple[Path, dict[str, str]],
                                                 openbao: OpenBao) -> None:
    """SIGKILL: connections refused; a restarted dev server is a new CA, and signs."""
    directory, _ = outage_dir

    async def scenario() -> EnrollmentResult:
        gateway = _gateway(directory)
        try:
            before = await gateway.enrollment.submit(_request("vault", "before.example.test", "k-0"))
            assert before.state is RequestState.ISSUED
            openbao.kill()
            first = await gateway.enrollment.submit(_request("vault-token", "killed.example.test", "k-1"))
            assert first.state is RequestState.SUBMITTED
            assert first.retrying and first.reason == "retrying: the CA is unavailable"
            await asyncio.sleep(1.5)
            await gateway.enrollment.retry_due()
            rows = gateway.enrollment.list_requests(RequestFilter())
            assert any(r.id == first.request_id and r.attempts >= 2 for r in rows)
            health = await gateway.backends.health()
            assert health["openbao-token"].ok is False
            openbao.restart()
            done = await _until_final(gateway, first.request_id)
            # The AppRole token from before died with the dev server: a 403, one fresh
            # login with the same role_id/secret_id, and the request issues.
            login = gateway.backends.get("openbao").login  # type: ignore[attr-defined]
            logins = login.logins
            after = await gateway.enrollment.submit(_request("vault", "after.example.test", "k-2"))
            assert after.state is RequestState.ISSUED and login.logins == logins + 1
            return done
        finally:
            await gateway.close()

    result = asyncio.run(scenario())
    verify_chain(_pem(result), openbao.root_pem, "killed.example.test")


def test_adcs_down_then_back_completes(outage_dir: tuple[Path, dict[str, str]],
                                       adcs_sim: AdcsSimulator) -> None:
    directory, _ = outage_dir

    async def scenario() -> EnrollmentResult:
        gateway = _gateway(directory)
        try:
            adcs_sim.stop()
            try:
                first = await gateway.enrollment.submit(_request("adcs", "down.example.test", "a-1"))
                assert first.state is RequestState.SUBMITTED and first.retrying
            finally:
                adcs_sim.start()
            return await _until_final(gateway, first.request_id)
        finally:
            await gateway.close()

    result = asyncio.run(scenario())
    verify_chain(_pem(result), adcs_sim.root_pem, "down.example.test")


def test_adcs_denial_by_manager_fails_the_request(outage_dir: tuple[Path, dict[str, str]],
                                                  adcs_sim: AdcsSimulator) -> None:
    directory, _ = outage_dir

    async def scenario() -> None:
        gateway = _gateway(directory)
        try:
            first = await gateway.enrollment.submit(_request("adcs-approval", "nope.example.test", "d-1"))
            assert first.state is RequestState.PENDING
            held = max(r.id for r in adcs_sim.requests.values() if r.disposition == 5)
            adcs_sim.deny(held)
            await asyncio.sleep(1.2)
            await gateway.enrollment.retry_due()
            with pytest.raises(GatewayError) as caught:
                gateway.enrollment.result(first.request_id)
            assert "Denied by CORP\\pkiadmin" in caught.value.detail
        finally:
            await gateway.close()

    asyncio.run(scenario())


def test_fallback_backend_signs_while_the_primary_is_down(outage_dir: tuple[Path, dict[str, str]],
                                                          openbao: OpenBao,
                                                          adcs_sim: AdcsSimulator) -> None:
    directory, _ = outage_dir

    async def scenario() -> EnrollmentResult:
        gateway = _gateway(directory)
        try:
            openbao.pause()
            try:
                return await gateway.enrollment.submit(
                    _request("vault-or-adcs", "fallback.example.test", "f-1"))
            finally:
                openbao.resume()
        finally:
            await gateway.close()

    result = asyncio.run(scenario())
    assert result.state is RequestState.ISSUED and result.certificate is not None
    assert result.certificate.backend == "adcs"
    verify_chain(_pem(result), adcs_sim.root_pem, "fallback.example.test")


def test_cli_revocation_reaches_vault_and_is_recorded_for_adcs(
        data_dir: tuple[Path, dict[str, str]], openbao: OpenBao, tmp_path: Path) -> None:
    directory, env = data_dir
    serials = {}
    for profile in ("vault", "adcs"):
        out = tmp_path / f"{profile}.pem"
        run_cli(["certs", "issue", "--profile", profile, "--csr",
                 str(write_csr(tmp_path, f"rev-{profile}.example.test")), "--out", str(out)],
                directory, env=env)
        serials[profile] = format(x509.load_pem_x509_certificates(out.read_bytes())[0].serial_number, "x")
    done = run_cli(["certs", "revoke", serials["vault"], "--reason", "keyCompromise"], directory,
                   env=env).stdout
    assert done.startswith(f"revoked {serials['vault']}")
    crl = x509.load_der_x509_crl(openbao.api("GET", "pki/issuer/default/crl/der").content)
    assert crl.get_revoked_certificate_by_serial_number(int(serials["vault"], 16)) is not None
    # The gateway serves the backend's own CRL too.
    served = run_cli(["crl", "--backend", "openbao"], directory, env=env).stdout
    assert x509.load_pem_x509_crl(served.encode()).get_revoked_certificate_by_serial_number(
        int(serials["vault"], 16)) is not None
    recorded = run_cli(["certs", "revoke", serials["adcs"], "--reason", "superseded"], directory,
                       env=env).stdout
    assert "needs an operator" in recorded
    # Still valid at the CA, and the request for an operator is on record with instructions.
    shown = run_cli(["certs", "show", serials["adcs"]], directory, env=env).stdout
    assert '"status": "valid"' in shown
    gateway = Gateway.build(load_config(directory / "gatehouse.yaml"), directory, SystemClock())
    try:
        with gateway.db.session() as session:
            row = session.scalars(select(RevocationRow).where(
                RevocationRow.serial == serials["adcs"])).one()
            assert row.state == "needs-operator" and row.reason == "superseded"
            assert f"certutil -revoke {serials['adcs']} 4" in row.detail
    finally:
        asyncio.run(gateway.close())
