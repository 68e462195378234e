"""Rule 10: internal error text never reaches a client.

A profile routed to a Vault backend that is down (its URL carries a distinctive marker):
EST answers 503 + Retry-After, ACME keeps the order ``processing`` with Retry-After (or a
503 problem), SCEP answers PENDING, GetCACert a 503, and no answer, nor a later poll, nor a
request that failed for good carries the backend's URL or address.  The detail is in the
server log.  Positive control: the default profile (internal CA) still issues on the same
server.
"""

from __future__ import annotations

import base64
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from tests.security.conftest import profile_like_default, start_configured
from tests.support.dns_server import DnsTestServer
from tests.support.pki import csr_der, make_csr
from tests.support.server import GatehouseServer, free_port, run_cli
from tests.unit.protocols.acme.signer import Client, b64
from tests.unit.protocols.scep.client import (
    Client as ScepClient,
)
from tests.unit.protocols.scep.client import (
    csr_with_challenge,
    ra_from_ca_ra_cert,
    self_signed,
)
from tests.unit.protocols.scep.server_setup import challenge, http_get, http_post

pytestmark = pytest.mark.e2e

MARKER = "vault-internal-leak-marker"
TOKEN_ENV = "GH_LEAK_TEST_VAULT_TOKEN"
PASSWORD = "leak-test-password"


@dataclass
class Env:
    server: GatehouseServer
    vault_address: str  # host:port of the dead Vault
    http: httpx.Client
    tokens: dict[str, str]

    def leaks(self, text: str | bytes) -> bool:
        value = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        return MARKER in value or self.vault_address in value


class _Http01(http.server.ThreadingHTTPServer):
    tokens: dict[str, str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Http01

    def do_GET(self) -> None:
        body = self.server.tokens.get(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *_args: Any) -> None:
        pass


def _dead_vault(config: dict[str, Any], address: str, *, max_attempts: int) -> None:
    config["backends"]["deadvault"] = {
        "type": "vault", "url": f"https://{address}/{MARKER}", "mount": "pki",
        "role": "gatehouse", "timeout": 2, "auth": {"method": "token", "token_env": TOKEN_ENV}}
    profile_like_default(config, "down", backend="deadvault")
    config["retry"] = {"max_attempts": max_attempts, "base_delay": "2s", "max_delay": "5s"}


def _users(data_dir: Path) -> None:
    for profile in ("default", "down"):
        run_cli(["user", "add", profile, "dev"], data_dir, stdin=PASSWORD + "\n")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    web = _Http01(("127.0.0.1", 0), _Handler)
    web.tokens = {}
    threading.Thread(target=web.serve_forever, daemon=True).start()
    dns = DnsTestServer().start()  # every name resolves to 127.0.0.1
    server = start_configured(
        tmp_path_factory, "leaks",
        lambda config, _dir: _dead_vault(config, address, max_attempts=20),
        setup=_users,
        env={TOKEN_ENV: "s.leak-test-token", "GATEHOUSE_ACME_HTTP01_PORT": str(web.server_address[1]),
             "GATEHOUSE_ACME_DNS_RESOLVER": dns.address,
             "GATEHOUSE_ACME_VALIDATION_ALLOW": "127.0.0.0/8,::1/128"})
    with httpx.Client(verify=ssl.create_default_context(cafile=str(server.root_pem)),
                      timeout=30) as client:
        yield Env(server, address, client, web.tokens)
    server.stop()
    web.shutdown()
    dns.stop()


def _simpleenroll(env: Env, label: str | None, cn: str) -> httpx.Response:
    path = f"/.well-known/est/{label}/simpleenroll" if label else "/.well-known/est/simpleenroll"
    body = base64.encodebytes(csr_der(make_csr(cn)[0]))
    return env.http.post(env.server.https_url + path, content=body, auth=("dev", PASSWORD),
                         headers={"content-type": "application/pkcs10"})


def test_est_enroll_during_an_outage_is_503_without_the_backend_url(env: Env) -> None:
    assert _simpleenroll(env, None, "est-ok.example.test").status_code == 200  # control
    first = _simpleenroll(env, "down", "est-down.example.test")
    assert first.status_code == 503, first.text
    assert int(first.headers["retry-after"]) > 0
    assert not env.leaks(first.content), first.text
    again = _simpleenroll(env, "down", "est-down.example.test")  # the device polls
    assert again.status_code == 503 and not env.leaks(again.content), again.text
    cacerts = env.http.get(env.server.https_url + "/.well-known/est/down/cacerts")
    assert cacerts.status_code == 503 and not env.leaks(cacerts.content), cacerts.text
    assert MARKER in env.server.log()  # the operator still has the detail


def test_scep_get_ca_cert_and_pkcsreq_during_an_outage(env: Env) -> None:
    status, _ctype, body = http_get(f"{env.server.http_url}/scep?operation=GetCACert")
    assert status == 200  # control
    status, _ctype, down = http_get(f"{env.server.http_url}/scep/down?operation=GetCACert")
    assert status == 503 and not env.leaks(down), down
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # The device learnt the profile's RA before the outage (its own RA, in the data dir).
    ra_pem = (env.server.data_dir / "scep" / "down" / "ra.pem").read_bytes()
    ra_der = x509.load_pem_x509_certificate(ra_pem).public_bytes(Encoding.DER)
    client = ScepClient(ra_der=ra_der, key=key, signer=self_signed(key))
    csr = csr_with_challenge(key, "scep-down", challenge(env.server.data_dir, "down"))
    status, _ctype, answer = http_post(f"{env.server.http_url}/scep/down?operation=PKIOperation",
                                       client.pkcs_req(csr))
    assert status == 200
    reply = client.read(answer)
    assert reply.status == "3", reply.fail_text  # PENDING: the client polls
    assert not env.leaks(answer) and not env.leaks(reply.fail_text or "")
    control = ScepClient(ra_der=ra_from_ca_ra_cert(body)[0], key=key, signer=self_signed(key))
    status, _ctype, ok = http_post(f"{env.server.http_url}/scep?operation=PKIOperation",
                                   control.pkcs_req(csr_with_challenge(
                                       key, "scep-ok", challenge(env.server.data_dir))))
    assert control.read(ok).status == "0"


def _order(env: Env, profile: str | None, name: str) -> tuple[Client, str, dict[str, Any]]:
    url = env.server.https_url + (f"/acme/{profile}/directory" if profile else "/acme/directory")
    client = Client(env.http, url)
    assert client.register().status_code == 201
    response = client.post(client.directory["newOrder"],
                           {"identifiers": [{"type": "dns", "value": name}]})
    assert response.status_code == 201, response.text
    order_url, order = response.headers["Location"], response.json()
    for authz_url in order["authorizations"]:
        authz = client.post(authz_url, None).json()
        http01 = next(c for c in authz["challenges"] if c["type"] == "http-01")
        env.tokens[http01["token"]] = client.key_authorization(http01["token"])
        client.post(http01["url"], {})
        _wait(client, authz_url, {"valid", "invalid"})
    assert _wait(client, order_url, {"ready", "invalid"})["status"] == "ready"
    return client, order_url, order


def _wait(client: Client, url: str, until: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.post(url, None).json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def _acme_csr(name: str) -> str:
    return b64(csr_der(make_csr(None, dns=[name])[0]))


def test_acme_finalize_during_an_outage_says_try_later_without_the_backend_url(env: Env) -> None:
    client, order_url, order = _order(env, None, "acme-ok.example.test")  # control
    client.post(order["finalize"], {"csr": _acme_csr("acme-ok.example.test")})
    assert _wait(client, order_url, {"valid", "invalid"})["status"] == "valid"
    client, order_url, order = _order(env, "down", "acme-down.example.test")
    final = client.post(order["finalize"], {"csr": _acme_csr("acme-down.example.test")})
    assert not env.leaks(final.content), final.text
    if final.status_code == 200:  # RFC 8555 §7.4: processing + Retry-After, the client polls
        assert final.json()["status"] == "processing" and int(final.headers["retry-after"]) > 0
    else:
        assert final.status_code == 503 and final.headers.get("retry-after"), final.text
    polled = client.post(order_url, None)
    assert polled.json()["status"] == "processing" and not env.leaks(polled.content)


@pytest.fixture(scope="module")
def exhausted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One attempt only: an outage fails the request for good at once."""
    address = f"127.0.0.1:{free_port()}"
    server = start_configured(
        tmp_path_factory, "leaks-exhausted",
        lambda config, _dir: _dead_vault(config, address, max_attempts=1),
        setup=_users, env={TOKEN_ENV: "s.leak-test-token"})
    with httpx.Client(verify=ssl.create_default_context(cafile=str(server.root_pem)),
                      timeout=30) as client:
        yield Env(server, address, client, {})
    server.stop()


def test_a_request_failed_by_an_outage_tells_the_client_no_internals(exhausted: Env) -> None:
    assert _simpleenroll(exhausted, None, "est-ok2.example.test").status_code == 200  # control
    failed = _simpleenroll(exhausted, "down", "est-failed.example.test")
    assert failed.status_code != 400 and failed.status_code >= 403, failed.text
    assert "unavailable" in failed.text and not exhausted.leaks(failed.content), failed.text
    again = _simpleenroll(exhausted, "down", "est-failed.example.test")  # later poll
    assert not exhausted.leaks(again.content), again.text
    audit = run_cli(["requests", "list", "--state", "failed"], exhausted.server.data_dir).stdout
    assert "est-failed.example.test" in audit
    assert MARKER in exhausted.server.log()
