"""Rule 9: the console signs in to a server-side session, never a cookie holding the token.

The cookie is an opaque session id that dies at sign-out, at expiry and with its token;
sign-in and sign-out need their CSRF value; HTTPS answers carry HSTS; the API docs page
loads nothing from a third party.  Each refusal has its positive control beside it.
"""

from __future__ import annotations

import re
import sqlite3
import ssl
from collections.abc import Iterator

import httpx
import pytest

from tests.security.conftest import start_configured
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e

COOKIE = "__Host-gatehouse_console"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    gh = start_configured(tmp_path_factory, "console-session")
    yield gh
    gh.stop()


def _token(server: GatehouseServer, name: str, role: str = "admin") -> str:
    token = run_cli(["token", "create", "--role", role, "--name", name],
                    server.data_dir).stdout.strip()
    assert token.startswith("gh_")
    return token


def _browser(server: GatehouseServer) -> httpx.Client:
    return httpx.Client(base_url=server.https_url, timeout=60,
                        verify=ssl.create_default_context(cafile=str(server.root_pem)))


def _csrf(page: httpx.Response) -> str:
    match = _CSRF.search(page.text)
    assert match, page.text[:500]
    return match.group(1)


def _sign_in(client: httpx.Client, token: str) -> httpx.Response:
    form = client.get("/console/login")
    answer = client.post("/console/login", data={"token": token, "csrf": _csrf(form)})
    assert answer.status_code == 303, answer.text
    return answer


def _signed_in(client: httpx.Client) -> bool:
    page = client.get("/console/")
    assert page.status_code in (200, 303), page.status_code
    return page.status_code == 200 and "Sign out" in page.text


def _with_cookie(server: GatehouseServer, value: str) -> httpx.Client:
    client = _browser(server)
    client.cookies.set(COOKIE, value, domain="127.0.0.1", path="/")
    return client


def _age_sessions(server: GatehouseServer, column: str, value: str) -> None:
    """Make every stored session look old (as if the clock had moved on)."""
    with sqlite3.connect(server.data_dir / "gatehouse.db") as db:
        db.execute(f"UPDATE console_sessions SET {column} = ?", (value,))


def test_cookie_is_an_opaque_session_id_not_the_token(server: GatehouseServer) -> None:
    token = _token(server, "cookie-check")
    with _browser(server) as client:
        answer = _sign_in(client, token)
        set_cookie = answer.headers["set-cookie"]
        assert f"{COOKIE}=" in set_cookie
        for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
            assert attribute.lower() in set_cookie.lower(), set_cookie
        value = client.cookies[COOKIE]
        secret = token.split(".", 1)[1]
        assert value != token and secret not in value and secret not in set_cookie
        assert all(secret not in v for v in client.cookies.values())
        assert _signed_in(client)
    # The token itself, put in the cookie as the old console did, signs nobody in.
    with _with_cookie(server, token) as forged:
        assert not _signed_in(forged)


def test_sign_out_kills_the_session_server_side(server: GatehouseServer) -> None:
    token = _token(server, "logout-check")
    with _browser(server) as client:
        _sign_in(client, token)
        old = client.cookies[COOKIE]
        dashboard = client.get("/console/")
        assert dashboard.status_code == 200
        out = client.post("/console/logout", data={"csrf": _csrf(dashboard)})
        assert out.status_code == 303 and out.headers["location"].endswith("/console/login")
    with _with_cookie(server, old) as replay:
        assert not _signed_in(replay)  # the copied cookie is dead
    with _browser(server) as fresh:
        _sign_in(fresh, token)  # positive control: the token still signs in
        assert _signed_in(fresh)
        assert fresh.cookies[COOKIE] != old


def test_expired_and_idle_sessions_are_refused(server: GatehouseServer) -> None:
    token = _token(server, "expiry-check")
    with _browser(server) as client:
        _sign_in(client, token)
        assert _signed_in(client)
        _age_sessions(server, "expires_at", "2000-01-01 00:00:00.000000")
        assert not _signed_in(client)
    with _browser(server) as client:
        _sign_in(client, token)
        assert _signed_in(client)
        _age_sessions(server, "last_seen_at", "2000-01-01 00:00:00.000000")
        assert not _signed_in(client)
    with _browser(server) as client:  # positive control: a new session works
        _sign_in(client, token)
        assert _signed_in(client)


def test_session_dies_with_its_token(server: GatehouseServer) -> None:
    token = _token(server, "disable-check", "auditor")
    with _browser(server) as client:
        _sign_in(client, token)
        assert _signed_in(client)
        run_cli(["token", "disable", "disable-check"], server.data_dir)
        assert not _signed_in(client)


def test_sign_in_needs_its_csrf_value(server: GatehouseServer) -> None:
    token = _token(server, "login-csrf")
    with _browser(server) as client:
        client.get("/console/login")  # the form's cookie is set, but the field is missing
        bare = client.post("/console/login", data={"token": token})
        assert bare.status_code == 403 and COOKIE not in bare.headers.get("set-cookie", "")
        # A cross-site form carrying a value from the attacker's own session of the page.
        with _browser(server) as attacker:
            foreign = _csrf(attacker.get("/console/login"))
        crossed = client.post("/console/login", data={"token": token, "csrf": foreign})
        assert crossed.status_code == 403 and COOKIE not in crossed.headers.get("set-cookie", "")
        assert not _signed_in(client)
        _sign_in(client, token)  # positive control: with its own value
        assert _signed_in(client)


def test_sign_out_needs_its_csrf_value(server: GatehouseServer) -> None:
    token = _token(server, "logout-csrf")
    with _browser(server) as client:
        _sign_in(client, token)
        forged = client.post("/console/logout", data={})
        assert forged.status_code == 403
        assert _signed_in(client)  # the forged sign-out did nothing
        wrong = client.post("/console/logout", data={"csrf": "0" * 64})
        assert wrong.status_code == 403 and _signed_in(client)
        good = client.post("/console/logout", data={"csrf": _csrf(client.get("/console/"))})
        assert good.status_code == 303
        assert not _signed_in(client)


def test_https_answers_carry_hsts(server: GatehouseServer) -> None:
    with _browser(server) as client:
        for path in ("/console/login", "/healthz", "/.well-known/est/cacerts",
                     "/acme/directory", "/admin/docs"):
            value = client.get(path).headers.get("strict-transport-security", "")
            match = re.fullmatch(r"max-age=(\d+)", value)
            assert match and int(match.group(1)) >= 180 * 86400, (path, value)
    plain = httpx.get(f"{server.http_url}/healthz")
    assert plain.status_code == 200 and "strict-transport-security" not in plain.headers


def test_api_docs_page_loads_nothing_from_a_third_party(server: GatehouseServer) -> None:
    with _browser(server) as client:
        page = client.get("/admin/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/admin/openapi.json" in page.text and "/admin/api/certificates" in page.text
        external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page.text,
                              re.IGNORECASE)
        assert not external, external
        assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", page.text)
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert client.get("/admin/openapi.json").json()["paths"]
