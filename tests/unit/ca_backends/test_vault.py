"""The Vault/OpenBao backend against a real OpenBao (``bao server -dev``, TLS listener).

Auth (token from env/file, AppRole, TLS cert), token renewal and re-login, a 403 answered
by one fresh login and then a clear failure, sign vs sign-verbatim, issuer_ref, namespaces,
revoke + CRL passthrough, and the error mapping (MockTransport for 5xx/429/garbage).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import ValidationError

from ca_backends.base import BackendRejected, BackendUnavailable, Unsupported
from ca_backends.vault import VaultBackend, VaultConfig, colon_hex
from ca_backends.vault.auth import VaultAuthError
from gateway.config import ConfigError, load_config
from gateway.errors import ErrorKind
from gateway.model import IssuedCertificate, RevocationReason
from tests.contract.conftest import request_and_decision
from tests.support.openbao import OpenBao


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    server = OpenBao(tmp_path_factory.mktemp("openbao")).start()
    server.setup_pki()
    yield server
    server.stop()


def config(bao: OpenBao, **overrides: Any) -> VaultConfig:
    entry: dict[str, Any] = {"type": "vault", "url": bao.url, "role": "gatehouse",
                             "ca_cert": str(bao.ca_pem), "timeout": 5,
                             "auth": {"method": "token", "token_env": "UNIT_BAO_TOKEN"}}
    entry.update(overrides)
    return VaultConfig.model_validate(entry)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backend(bao: OpenBao, tmp_path: Path, *, env: dict[str, str] | None = None,
            clock: FakeMonotonic | None = None, **overrides: Any) -> VaultBackend:
    return VaultBackend("vault", config(bao, **overrides), tmp_path, environ=env or {},
                        monotonic=clock or FakeMonotonic())


async def issue(b: VaultBackend, cn: str = "svc.example.test", **changes: Any) -> IssuedCertificate:
    request, decision = request_and_decision(cn)
    try:
        result = await b.issue(request, dataclasses.replace(decision, **changes))
    finally:
        await b.close()
    assert isinstance(result, IssuedCertificate)
    return result


def test_token_from_env_is_renewed_before_it_expires(bao: OpenBao, tmp_path: Path) -> None:
    token = bao.token(policies=["gatehouse"], ttl="1h")
    clock = FakeMonotonic()
    b = backend(bao, tmp_path, env={"UNIT_BAO_TOKEN": token}, clock=clock)

    async def scenario() -> None:
        request, decision = request_and_decision()
        await b.issue(request, decision)
        assert (b.login.logins, b.login.renewals) == (1, 0)
        clock.now += 50 * 60  # 10 of 60 minutes left: below a third
        await b.issue(request, decision)
        assert (b.login.logins, b.login.renewals) == (1, 1)
        await b.close()

    run(scenario())
    ttl = bao.api("POST", "auth/token/lookup", {"token": token}).json()["data"]["ttl"]
    assert ttl > 3000  # renew-self reset the lease at Vault


def test_token_file_is_read_again_after_a_403(bao: OpenBao, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    old = bao.token(policies=["gatehouse"])
    token_file.write_text(old + "\n")
    b = backend(bao, tmp_path, auth={"method": "token", "token_file": "token"})

    async def scenario() -> None:
        request, decision = request_and_decision()
        assert isinstance(await b.issue(request, decision), IssuedCertificate)
        bao.api("POST", "auth/token/revoke", {"token": old})
        token_file.write_text(bao.token(policies=["gatehouse"]))  # an agent rotated it
        assert isinstance(await b.issue(request, decision), IssuedCertificate)
        assert b.login.logins == 2
        bao.api("POST", "auth/token/revoke", {"token": token_file.read_text()})
        with pytest.raises(VaultAuthError) as caught:
            await b.issue(request, decision)
        assert caught.value.kind is ErrorKind.BACKEND_UNAVAILABLE
        assert "refused the configured token" in caught.value.detail
        assert "permission denied" in caught.value.detail
        await b.close()

    run(scenario())


def test_403_logs_in_once_more_then_fails_clearly(bao: OpenBao, tmp_path: Path) -> None:
    """AppRole whose policy lacks sign: exactly one fresh login, then a clear error."""
    bao.api("POST", "auth/approle/role/weak", {"token_policies": ["default"], "token_ttl": "1h"})
    role_id = bao.api("GET", "auth/approle/role/weak/role-id").json()["data"]["role_id"]
    secret = bao.api("POST", "auth/approle/role/weak/secret-id", {}).json()["data"]["secret_id"]
    b = backend(bao, tmp_path, env={"SECRET": secret},
                auth={"method": "approle", "role_id": role_id, "secret_id_env": "SECRET"})
    request, decision = request_and_decision()
    with pytest.raises(BackendUnavailable) as caught:
        run(b.issue(request, decision))
    assert b.login.logins == 2
    assert "403 permission denied" in caught.value.detail and "after a fresh login" in caught.value.detail
    assert "pki/sign/gatehouse" in caught.value.detail


def test_approle_batch_token_is_replaced_by_a_new_login(bao: OpenBao, tmp_path: Path) -> None:
    bao.api("POST", "auth/approle/role/batch", {"token_policies": ["gatehouse"], "token_ttl": "1h",
                                                 "token_type": "batch"})
    role_id = bao.api("GET", "auth/approle/role/batch/role-id").json()["data"]["role_id"]
    secret_file = tmp_path / "secret-id"
    secret = bao.api("POST", "auth/approle/role/batch/secret-id", {}).json()["data"]["secret_id"]
    secret_file.write_text(secret)
    clock = FakeMonotonic()
    b = backend(bao, tmp_path, clock=clock,
                auth={"method": "approle", "role_id": role_id, "secret_id_file": str(secret_file)})

    async def scenario() -> None:
        request, decision = request_and_decision()
        await b.issue(request, decision)
        clock.now += 45 * 60  # batch tokens cannot be renewed
        await b.issue(request, decision)
        assert (b.login.logins, b.login.renewals) == (2, 0)
        await b.close()

    run(scenario())


def test_cert_auth_and_sign_verbatim_keep_the_decided_extensions(bao: OpenBao, tmp_path: Path) -> None:
    b = backend(bao, tmp_path, mode="sign-verbatim", role=None,
                auth={"method": "cert", "client_cert": str(bao.client_cert),
                      "client_key": str(bao.client_key)})
    issued = run(issue(b, extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,),
                       key_usage=frozenset({"digital_signature", "key_agreement"})))
    cert = issued.certificate
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_agreement and not usage.key_encipherment
    assert b.login.method == "cert"


def test_sign_verbatim_refuses_when_policy_decided_another_subject(bao: OpenBao, tmp_path: Path) -> None:
    b = backend(bao, tmp_path, mode="sign-verbatim", env={"UNIT_BAO_TOKEN": bao.root_token})
    request, decision = request_and_decision("asked.example.test")
    other = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "decided.example.test")])
    with pytest.raises(BackendRejected) as caught:
        run(b.issue(request, dataclasses.replace(decision, subject=other)))
    assert "sign-verbatim would issue the CSR's subject" in caught.value.detail
    assert b.login.logins == 0  # refused before asking Vault


def test_sign_sends_the_decided_names_and_not_after(bao: OpenBao, tmp_path: Path) -> None:
    bao.api("POST", "pki/roles/decided", {"key_type": "any", "allow_any_name": True,
                                          "use_csr_sans": False, "use_csr_common_name": False,
                                          "max_ttl": "9600h", "allow_ip_sans": True})
    b = backend(bao, tmp_path, env={"UNIT_BAO_TOKEN": bao.root_token})
    not_after = (dt.datetime.now(dt.UTC) + dt.timedelta(days=12)).replace(microsecond=0)
    request, decision = request_and_decision("csr.example.test")
    from gateway.model import Identifier, IdentifierType

    decision = dataclasses.replace(
        decision, template="decided", not_after=not_after,
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "policy.example.test")]),
        sans=(Identifier(IdentifierType.DNS, "policy.example.test"),
              Identifier(IdentifierType.IP, "192.0.2.7")))
    issued = run(b.issue(request, decision))
    assert issued.subject == "CN=policy.example.test"
    assert {str(i) for i in issued.sans} == {"dns:policy.example.test", "ip:192.0.2.7"}
    assert issued.not_after == not_after


def test_role_refusals_are_rejections_with_vaults_reason(bao: OpenBao, tmp_path: Path) -> None:
    env = {"UNIT_BAO_TOKEN": bao.root_token}
    for template, reason in (("narrow", "common name svc.other.test not allowed by this role"),
                             ("no-such-role", "unknown role: no-such-role")):
        request, decision = request_and_decision("svc.other.test", template=template)
        with pytest.raises(BackendRejected) as caught:
            run(backend(bao, tmp_path, env=env).issue(request, decision))
        assert caught.value.detail == f"Vault refused: {reason}"
    request, decision = request_and_decision(days=365 * 30)  # beyond the issuing CA
    with pytest.raises(BackendRejected) as caught:
        run(backend(bao, tmp_path, env=env).issue(request, decision))
    assert "beyond the expiration of the CA certificate" in caught.value.detail


def test_issuer_ref_selects_the_issuer(bao: OpenBao, tmp_path: Path) -> None:
    issuers = bao.api("LIST", "pki/issuers").json()["data"]["keys"]
    assert len(issuers) == 2  # the intermediate and its root (imported without a key)
    ref = bao.api("GET", "pki/config/issuers").json()["data"]["default"]
    b = backend(bao, tmp_path, env={"UNIT_BAO_TOKEN": bao.root_token}, issuer_ref=ref)
    issued = run(issue(b))
    chain = run(backend(bao, tmp_path, env={"UNIT_BAO_TOKEN": bao.root_token},
                        issuer_ref=ref).ca_chain())
    assert issued.certificate.issuer == chain[0].subject
    # Vault answers 500 for an unknown issuer: mapped like every 5xx (retryable), with its text.
    bogus = backend(bao, tmp_path, env={"UNIT_BAO_TOKEN": bao.root_token}, issuer_ref="nope")
    with pytest.raises(BackendUnavailable) as caught:
        run(issue(bogus))
    assert "unable to find PKI issuer for reference: nope" in caught.value.detail


def test_namespace_header_reaches_the_namespaced_mount(bao: OpenBao, tmp_path: Path) -> None:
    root = x509.load_pem_x509_certificate(bao.setup_namespace("team-a").read_bytes())
    b = backend(bao, tmp_path, env={"UNIT_BAO_TOKEN": bao.root_token}, namespace="team-a")
    issued = run(issue(b))
    assert issued.certificate.issuer == root.subject
    issued.certificate.verify_directly_issued_by(root)


def test_revoke_by_serial_shows_in_the_passed_through_crl(bao: OpenBao, tmp_path: Path) -> None:
    env = {"UNIT_BAO_TOKEN": bao.token(policies=["gatehouse"])}
    issued = run(issue(backend(bao, tmp_path, env=env)))
    b = backend(bao, tmp_path, env=env)
    run(b.revoke(issued.serial, RevocationReason.KEY_COMPROMISE))
    crl_der = run(backend(bao, tmp_path, env=env).crl())
    crl = x509.load_der_x509_crl(crl_der)
    assert crl.get_revoked_certificate_by_serial_number(int(issued.serial, 16)) is not None
    direct = bao.api("GET", "pki/issuer/default/crl/der").content
    assert crl_der == direct
    with pytest.raises(BackendRejected) as caught:
        run(backend(bao, tmp_path, env=env).revoke("abcdef", RevocationReason.UNSPECIFIED))
    assert "ab:cd:ef" in caught.value.detail
    with pytest.raises(Unsupported):
        run(backend(bao, tmp_path, env=env).poll("x"))


def test_health_reports_version_and_bad_credentials(bao: OpenBao, tmp_path: Path) -> None:
    good = run(backend(bao, tmp_path, env={"UNIT_BAO_TOKEN": bao.root_token}).health())
    assert good.ok and "2." in good.detail
    bad = run(backend(bao, tmp_path, env={"UNIT_BAO_TOKEN": "s.not-a-token"}).health())
    assert not bad.ok and "refused the configured token" in bad.detail
    unset = run(backend(bao, tmp_path, env={}).health())
    assert not unset.ok and "UNIT_BAO_TOKEN" in unset.detail


def test_untrusted_tls_is_unavailable(bao: OpenBao, tmp_path: Path) -> None:
    b = backend(bao, tmp_path, env={"UNIT_BAO_TOKEN": bao.root_token}, ca_cert=str(bao.root_pem))
    with pytest.raises(BackendUnavailable) as caught:
        run(issue(b))
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.detail


# -- error mapping without a server ------------------------------------------------------


def mocked(tmp_path: Path, handler: Any) -> VaultBackend:
    cfg = VaultConfig.model_validate({"type": "vault", "url": "https://vault.invalid", "role": "r",
                                      "auth": {"method": "token", "token_env": "T"}})
    return VaultBackend("vault", cfg, tmp_path, transport=httpx.MockTransport(handler),
                        environ={"T": "tok"})


def _lookup_ok(request: httpx.Request) -> httpx.Response | None:
    if request.url.path.endswith("lookup-self"):
        return httpx.Response(200, json={"data": {"ttl": 0, "renewable": False}})
    return None


@pytest.mark.parametrize(("status", "body", "headers", "kind", "text"), [
    (503, {"errors": ["Vault is sealed"]}, {}, ErrorKind.BACKEND_UNAVAILABLE, "Vault is sealed"),
    (500, {"errors": ["internal error"]}, {}, ErrorKind.BACKEND_UNAVAILABLE, "HTTP 500"),
    (429, {"errors": ["rate limited"]}, {"Retry-After": "7"}, ErrorKind.BACKEND_UNAVAILABLE, "429"),
    (400, {"errors": ["csr contains no data"]}, {}, ErrorKind.BACKEND_REJECTED, "csr contains no data"),
    (404, {}, {}, ErrorKind.BACKEND_REJECTED, "HTTP 404"),
    (200, {"data": {"certificate": "garbage"}}, {}, ErrorKind.BACKEND_UNAVAILABLE, "readable"),
])
def test_http_answers_map_to_error_kinds(tmp_path: Path, status: int, body: dict[str, Any],
                                         headers: dict[str, str], kind: ErrorKind, text: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _lookup_ok(request) or httpx.Response(status, json=body, headers=headers)

    request, decision = request_and_decision()
    with pytest.raises((BackendUnavailable, BackendRejected)) as caught:
        run(mocked(tmp_path, handler).issue(request, decision))
    assert caught.value.kind is kind and text in caught.value.detail
    if status == 429:
        assert caught.value.retry_after == 7


def test_namespace_and_token_headers_are_sent(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"ttl": 0}})

    cfg = VaultConfig.model_validate({"type": "vault", "url": "https://vault.invalid/", "mount": "pki-int",
                                      "namespace": "ns1/team", "issuer_ref": "iss",
                                      "auth": {"method": "token", "token_env": "T"}})
    b = VaultBackend("vault", cfg, tmp_path, transport=httpx.MockTransport(handler),
                     environ={"T": "tok"})
    with pytest.raises(BackendUnavailable):
        run(b.ca_chain())
    assert seen[-1].url.path == "/v1/pki-int/issuer/iss/json"
    assert all(r.headers["X-Vault-Namespace"] == "ns1/team" for r in seen)
    assert seen[-1].headers["X-Vault-Token"] == "tok"


def test_colon_hex() -> None:
    assert colon_hex("1a2b3") == "01:a2:b3"
    assert colon_hex("00ff") == "ff"
    assert colon_hex("AB:CD") == "ab:cd"


@pytest.mark.parametrize(("entry", "message"), [
    ({"auth": {"method": "token", "token_file": "a", "token_env": "B"}}, "exactly one"),
    ({"auth": {"method": "token"}}, "exactly one"),
    ({"auth": {"method": "approle", "role_id": "r"}}, "secret_id"),
    ({"auth": {"method": "kerberos"}}, "method"),
    ({"url": "vault:8200"}, "url"),
    ({"url": "http://vault:8200"}, "allow_insecure_http"),
    ({"mode": "issue"}, "mode"),
    ({"colour": "red"}, "colour"),
])
def test_bad_config_stops_start_up(tmp_path: Path, entry: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"type": "vault", "url": "https://vault:8200",
                            "auth": {"method": "token", "token_env": "T"}}
    with pytest.raises(ValidationError):
        VaultConfig.model_validate({**base, **entry})
    import yaml

    path = tmp_path / "gatehouse.yaml"
    path.write_text(yaml.safe_dump({"backends": {"v": {**base, **entry}},
                                    "profiles": {"default": {"backend": "v"}}}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "backend 'v'" in str(caught.value) and message in str(caught.value)


def test_validity_is_the_decided_one_or_the_roles(bao: OpenBao, tmp_path: Path) -> None:
    """An explicit not_after wins over the role's max_ttl (OpenBao 2.7); validity: role
    leaves it to the role."""
    bao.api("POST", "pki/roles/short", {"key_type": "any", "allow_any_name": True, "max_ttl": "24h"})
    env = {"UNIT_BAO_TOKEN": bao.root_token}
    request, decision = request_and_decision(template="short", days=30)
    decided = run(backend(bao, tmp_path, env=env).issue(request, decision))
    assert decided.not_after == decision.not_after
    by_role = run(backend(bao, tmp_path, env=env, validity="role").issue(request, decision))
    lifetime = by_role.not_after - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23) < lifetime <= dt.timedelta(hours=24)
