"""Rule 7: ACME validation never reaches internal addresses and never echoes the target.

Two real servers: one on the defaults (validation may reach only publicly routable
addresses), one for a lab with ``GATEHOUSE_ACME_VALIDATION_ALLOW=127.0.0.0/8`` (the
positive controls, and the redirect rules: at most 10, to the http-01 port only, every
hop's address re-checked).  The challenge web server answers unknown tokens with a
status line carrying a banner that must never appear in a problem document.
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.security.conftest import start_configured
from tests.support.dns_server import DnsTestServer
from tests.support.server import GatehouseServer, free_port
from tests.unit.protocols.acme.signer import Client

pytestmark = pytest.mark.e2e
PROBLEM = "urn:ietf:params:acme:error:"
BANNER = "INTERNAL-ADMIN-CONSOLE-v7"  # the reason phrase of the internal service


class Web(http.server.ThreadingHTTPServer):
    tokens: dict[str, str]  # token → key authorization
    redirects: dict[str, str]  # token → Location of the first answer
    hits: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Web

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        parts = self.path.strip("/").split("/")
        if parts[0] == "hop":  # /hop/<n>/<token>: n more redirects, then the answer
            left, token = int(parts[1]), parts[2]
            if left > 0:
                return self._redirect(f"/hop/{left - 1}/{token}")
            return self._answer(token)
        token = parts[-1]
        if token in self.server.redirects:
            return self._redirect(self.server.redirects[token])
        return self._answer(token)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, token: str) -> None:
        body = self.server.tokens.get(token)
        if body is None:
            self.send_response(418, BANNER)
            data = f"{BANNER} secret page".encode()
        else:
            self.send_response(200)
            data = body.encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@dataclass
class Lab:
    server: GatehouseServer
    http: httpx.Client
    web: Web
    dns: DnsTestServer

    def client(self) -> Client:
        client = Client(self.http, self.server.https_url + "/acme/directory")
        client.register(termsOfServiceAgreed=True)
        return client


def _web() -> Web:
    web = Web(("127.0.0.1", 0), _Handler)
    web.tokens, web.redirects, web.hits = {}, {}, []
    threading.Thread(target=web.serve_forever, daemon=True).start()
    return web


def _one_attempt(config: dict[str, Any], _data_dir: Any) -> None:
    config.setdefault("acme", {})["validation_attempts"] = 1


def _start(tmp_path_factory: pytest.TempPathFactory, name: str,
           allow: str | None) -> Iterator[Lab]:
    web, dns = _web(), DnsTestServer().start()
    env = {"GATEHOUSE_ACME_HTTP01_PORT": str(web.server_address[1]),
           "GATEHOUSE_ACME_TLSALPN01_PORT": str(free_port()),
           "GATEHOUSE_ACME_DNS_RESOLVER": dns.address}
    if allow is not None:
        env["GATEHOUSE_ACME_VALIDATION_ALLOW"] = allow
    server = start_configured(tmp_path_factory, name, _one_attempt, env=env)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(server.root_pem)),
                      timeout=30) as http:
        yield Lab(server, http, web, dns)
    server.stop()
    web.shutdown()
    dns.stop()


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from _start(tmp_path_factory, "ssrf-default", None)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from _start(tmp_path_factory, "ssrf-lab", "127.0.0.0/8")


def _new_order(client: Client, kind: str, value: str) -> httpx.Response:
    response: httpx.Response = client.post(client.directory["newOrder"],
                                           {"identifiers": [{"type": kind, "value": value}]})
    return response


def _wait(client: Client, url: str, until: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.post(url, None).json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def _validate(lab: Lab, client: Client, kind: str, value: str, *, serve: bool = True,
              redirect: str | None = None, challenge_type: str = "http-01"
              ) -> dict[str, Any]:
    """newOrder, answer one challenge; the final challenge object."""
    response = _new_order(client, kind, value)
    assert response.status_code == 201, response.text
    authz_url = response.json()["authorizations"][0]
    authz = client.post(authz_url, None).json()
    challenge = next(c for c in authz["challenges"] if c["type"] == challenge_type)
    token = challenge["token"]
    if serve:
        lab.web.tokens[token] = client.key_authorization(token)
    if redirect is not None:
        lab.web.redirects[token] = redirect.replace("TOKEN", token)
    client.post(challenge["url"], {})
    _wait(client, authz_url, {"valid", "invalid"})
    result: dict[str, Any] = client.post(challenge["url"], None).json()
    return result


def _detail(challenge: dict[str, Any]) -> str:
    assert challenge["status"] == "invalid", challenge
    detail: str = challenge["error"]["detail"]
    assert BANNER not in detail, detail  # neither the reason phrase nor the body
    return detail


# -- newOrder: internal IP identifiers -----------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1",
                                     "fd00:ec2::254", "100.64.0.1", "::ffff:127.0.0.1"])
def test_internal_ip_identifier_is_rejected(default: Lab, address: str) -> None:
    client = default.client()
    response = _new_order(client, "ip", address)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == PROBLEM + "rejectedIdentifier"
    assert "not publicly routable" in response.text


def test_literal_address_as_dns_identifier_is_rejected(default: Lab) -> None:
    client = default.client()  # lego sends IP addresses as dns identifiers
    response = _new_order(client, "dns", "169.254.169.254")
    assert response.status_code == 400, response.text
    assert response.json()["type"] == PROBLEM + "rejectedIdentifier"


def test_public_identifiers_are_accepted(default: Lab) -> None:
    client = default.client()  # positive control: the same door takes public identifiers
    assert _new_order(client, "ip", "192.0.43.10").status_code == 201
    assert _new_order(client, "dns", "www.example.test").status_code == 201


def test_lab_allow_list_opens_loopback_only(lab: Lab) -> None:
    client = lab.client()
    assert _new_order(client, "ip", "127.0.0.1").status_code == 201
    response = _new_order(client, "ip", "10.0.0.1")
    assert response.json()["type"] == PROBLEM + "rejectedIdentifier"


# -- validation: names resolving to internal addresses -------------------------------------

@pytest.mark.parametrize("challenge_type", ["http-01", "tls-alpn-01"])
def test_name_resolving_to_loopback_fails_without_connecting(
        default: Lab, challenge_type: str) -> None:
    client = default.client()
    before = len(default.web.hits)
    challenge = _validate(default, client, "dns", f"intranet-{challenge_type}.example.test",
                          serve=False, challenge_type=challenge_type)
    detail = _detail(challenge)
    assert "not publicly routable" in detail
    assert challenge["error"]["type"] == PROBLEM + "rejectedIdentifier"
    assert len(default.web.hits) == before  # nothing reached the internal server


def test_localhost_fails(default: Lab) -> None:
    default.dns.addresses["localhost"] = ["127.0.0.1"]
    challenge = _validate(default, default.client(), "dns", "localhost")
    assert "not publicly routable" in _detail(challenge)


def test_lab_validates_loopback_name_and_ip(lab: Lab) -> None:
    client = lab.client()  # positive control: the allow-list opens what the lab needs
    assert _validate(lab, client, "dns", "app.example.test")["status"] == "valid"
    assert _validate(lab, client, "ip", "127.0.0.1")["status"] == "valid"


def test_error_does_not_echo_the_status_line(lab: Lab) -> None:
    challenge = _validate(lab, lab.client(), "dns", "wrong.example.test", serve=False)
    assert "HTTP status" in _detail(challenge)


# -- redirects ------------------------------------------------------------------------------

def test_ten_redirects_are_followed(lab: Lab) -> None:
    challenge = _validate(lab, lab.client(), "dns", "ten.example.test",
                          redirect="/hop/9/TOKEN")  # 1 + 9 = 10 redirects
    assert challenge["status"] == "valid", challenge


def test_eleven_redirects_fail(lab: Lab) -> None:
    challenge = _validate(lab, lab.client(), "dns", "eleven.example.test",
                          redirect="/hop/10/TOKEN")
    assert "too many redirects" in _detail(challenge)


def test_redirect_to_another_port_fails(lab: Lab) -> None:
    other = _web()  # would answer correctly, but is not on the http-01 port
    try:
        client = lab.client()
        response = _new_order(client, "dns", "port.example.test")
        authz = client.post(response.json()["authorizations"][0], None).json()
        token = next(c for c in authz["challenges"] if c["type"] == "http-01")["token"]
        other.tokens[token] = client.key_authorization(token)
        port = other.server_address[1]
        lab.web.redirects[token] = f"http://port.example.test:{port}/x/{token}"
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        client.post(challenge["url"], {})
        _wait(client, response.json()["authorizations"][0], {"valid", "invalid"})
        detail = _detail(client.post(challenge["url"], None).json())
        assert f"port {port}" in detail
        assert other.hits == []
    finally:
        other.shutdown()


@pytest.mark.parametrize(("name", "target"), [
    ("r1", "10.0.0.1"), ("r2", "169.254.169.254"), ("r3", "[fd00:ec2::254]"),
    ("r4", "metadata.example.test")])
def test_redirect_to_internal_address_fails(lab: Lab, name: str, target: str) -> None:
    lab.dns.addresses["metadata.example.test"] = ["169.254.169.254"]
    port = lab.web.server_address[1]
    challenge = _validate(lab, lab.client(), "dns", f"{name}.example.test",
                          redirect=f"http://{target}:{port}/latest/meta-data/TOKEN")
    assert "not publicly routable" in _detail(challenge)


def test_redirect_to_other_scheme_fails(lab: Lab) -> None:
    challenge = _validate(lab, lab.client(), "dns", "ftp.example.test",
                          redirect="ftp://ftp.example.test/TOKEN")
    assert "scheme" in _detail(challenge)
