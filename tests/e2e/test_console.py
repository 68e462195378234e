"""The web console in a real headless Chromium (Debian ``chromium``, driven by Playwright):
sign in with a token, approve a held EST request that curl then collects, revoke a
certificate and find it in the CRL; roles and CSRF."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import openssl
from tests.e2e.test_admin_support import admin_client, create_token, init_data_dir, tls_context
from tests.support.server import REPO, GatehouseServer

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# The README's screenshot is refreshed only on request (GATEHOUSE_UPDATE_SCREENSHOT=1), so a
# test run never rewrites a tracked file.
SCREENSHOT = REPO / "docs" / "console.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    data_dir = tmp_path_factory.mktemp("console") / "gatehouse-data"
    init_data_dir(data_dir)
    gh = GatehouseServer(data_dir).start()
    yield gh
    gh.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "apt-get install -y chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        yield launched
        launched.close()


def new_page(browser: Browser) -> Page:
    # The server's certificate chains to the test's private root; trusting it inside
    # Chromium would need an NSS database, so this context skips the check.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})
    return context.new_page()


def sign_in(page: Page, server: GatehouseServer, token: str) -> None:
    page.goto(f"{server.https_url}/console/")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator("header nav")).to_be_visible()


def curl_enroll(server: GatehouseServer, work: Path) -> subprocess.CompletedProcess[str]:
    curl = shutil.which("curl")
    assert curl, "curl is not installed"
    return subprocess.run(
        [curl, "-sS", "--cacert", str(server.root_pem), "-u", "device:device-password",
         "-H", "Content-Type: application/pkcs10", "--data-binary", "@csr.b64",
         "-o", "answer.b64", "-w", "%{http_code}", "-D", "headers.txt",
         f"{server.https_url}/.well-known/est/approval/simpleenroll"],
        capture_output=True, text=True, cwd=work, timeout=60, check=False)


def test_approve_held_est_request_then_revoke_and_see_crl(
        server: GatehouseServer, browser: Browser, tmp_path: Path) -> None:
    admin_token = create_token(server.data_dir, "admin", "console-admin")
    with admin_client(server.https_url, server.root_pem, admin_token) as api:
        assert api.post("/users", json={"profile": "approval", "name": "device",
                                        "password": "device-password"}).status_code == 201
        for i in range(3):  # something on the dashboard's chart
            from tests.support.pki import csr_pem, make_csr

            csr = csr_pem(make_csr(f"dash-{i}", dns=[f"dash-{i}.example.test"])[0]).decode()
            assert api.post("/certificates", json={"csr": csr}).status_code == 201

    # A real EST client (curl + openssl) is told to come back later.
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "device.key", "-subj", "/CN=console-device", "-addext",
            "subjectAltName=DNS:console-device.example.test", "-outform", "DER", "-out",
            "csr.der", cwd=tmp_path)
    (tmp_path / "csr.b64").write_text(
        subprocess.run(["base64", "csr.der"], capture_output=True, text=True, cwd=tmp_path,
                       check=True).stdout)
    first = curl_enroll(server, tmp_path)
    assert first.stdout == "202", first.stdout + first.stderr
    assert "retry-after" in (tmp_path / "headers.txt").read_text().lower()

    page = new_page(browser)
    sign_in(page, server, admin_token)
    expect(page.locator("#pending-count")).to_have_text("1")
    page.click("text=Approvals")
    row = page.locator("tr", has_text="CN=console-device")
    expect(row).to_have_count(1)
    row.locator("button", has_text="Approve").click()
    expect(page.locator(".notice")).to_contain_text("issued")

    again = curl_enroll(server, tmp_path)
    assert again.stdout == "200", again.stdout + again.stderr
    pem = openssl("base64", "-d", "-in", "answer.b64", "-out", "answer.p7", cwd=tmp_path)
    pem = openssl("pkcs7", "-inform", "DER", "-in", "answer.p7", "-print_certs", cwd=tmp_path)
    cert = x509.load_pem_x509_certificate(pem[pem.index("-----BEGIN"):].encode())
    serial = format(cert.serial_number, "x")

    # Find it in the inventory, open it, revoke it.
    page.click("text=Certificates")
    page.fill("input[name=subject]", "console-device")
    page.click("button:has-text('Search')")
    page.locator("table.list a", has_text=serial[:16]).click()
    expect(page.locator("#serial")).to_have_text(serial)
    page.select_option("#reason", "keyCompromise")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Revoke')")
    expect(page.locator(".notice")).to_contain_text("Revoked")
    expect(page.locator("#cert-status")).to_have_text("revoked")

    crl = x509.load_der_x509_crl(httpx.get(f"{server.http_url}/crl/internal.crl").content)
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None

    # The audit log shows the console's actions by this token.
    page.goto(f"{server.https_url}/console/audit?actor=token:console-admin")
    expect(page.locator("table.audit")).to_contain_text("request.approved")
    expect(page.locator("table.audit")).to_contain_text("certificate.revoked")

    page.goto(f"{server.https_url}/console/")
    expect(page.locator("#pending-count")).to_have_text("0")
    shot = SCREENSHOT if os.environ.get("GATEHOUSE_UPDATE_SCREENSHOT") == "1" \
        else tmp_path / "console.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.context.close()


def test_challenge_and_eab_key_are_created_and_shown_once(server: GatehouseServer,
                                                          browser: Browser) -> None:
    page = new_page(browser)
    sign_in(page, server, create_token(server.data_dir, "admin"))
    page.click("text=Challenges & EAB")
    page.locator("form[action='/console/credentials/challenge'] button").click()
    secret = page.locator("#created-secret").inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", secret)
    page.goto(f"{server.https_url}/console/credentials")
    page.locator("form[action='/console/credentials/eab'] button").click()
    expect(page.locator("#eab-kid")).to_contain_text("eab-")
    assert secret not in page.content()
    page.context.close()


def test_wrong_token_roles_and_csrf(server: GatehouseServer, browser: Browser) -> None:
    page = new_page(browser)
    page.goto(f"{server.https_url}/console/login")
    page.fill("#token", "gh_00000000-0000-0000-0000-000000000000.nope")
    page.click("button[type=submit]")
    expect(page.locator(".problem")).to_contain_text("unknown")

    auditor = create_token(server.data_dir, "auditor")
    sign_in(page, server, auditor)
    page.click("text=Approvals")
    expect(page.locator("button", has_text="Approve")).to_have_count(0)
    page.click("text=Challenges & EAB")
    expect(page.locator("form[action='/console/credentials/challenge']")).to_have_count(0)
    page.context.close()

    # Never over plain HTTP: the token is a credential (docs/security.md, rule 1).
    plain = httpx.get(f"{server.http_url}/console/login")
    assert plain.status_code == 403 and "only over HTTPS" in plain.text

    # A forged cross-site form: the cookie rides along, but no CSRF value: refused.
    operator = create_token(server.data_dir, "operator")
    with httpx.Client(base_url=server.https_url, verify=tls_context(server.root_pem)) as client:
        login_csrf = re.search(r'name="csrf" value="([^"]+)"',
                               client.get("/console/login").text)
        assert login_csrf
        signed = client.post("/console/login", data={"token": operator,
                                                     "csrf": login_csrf.group(1)})
        assert signed.status_code == 303
        forged = client.post("/console/credentials/challenge", data={"profile": "default"})
        assert forged.status_code == 403
        assert "created-secret" not in forged.text
        assert client.get("/console/").headers["content-security-policy"].startswith(
            "default-src 'self'")
