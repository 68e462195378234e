"""Rule 3: the subject does not bypass the name rules.

Every name in a CSR's subject passes the same allow/deny rules as the SANs: a CN that is
a DNS name or IP address meets the profile's ``sans`` rules and joins the SANs when the CSR
lacks it; a subject attribute the profile does not list in ``subject.allowed_attributes``
(or whose value its patterns refuse) is refused with the reason, never trimmed.  ACME
certificates carry at most CN=<one of the order's identifiers>; any other subject is
badCSR (RFC 8555 §7.4).  Driven over EST (HTTPS, Basic auth), ``gatehouse certs issue``,
``gatehouse policy explain`` and ACME with http-01, each refusal beside its positive control.
"""

from __future__ import annotations

import base64
import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from tests.security.conftest import profile_like_default, start_configured
from tests.support.dns_server import DnsTestServer
from tests.support.pki import csr_der, csr_pem, make_csr
from tests.support.server import GatehouseServer, free_port, run_cli
from tests.unit.protocols.acme.signer import Client, b64

pytestmark = pytest.mark.e2e

PASSWORD = "Subject-names-test-pass-1"
EST = "/.well-known/est/restricted"
PROBLEM = "urn:ietf:params:acme:error:"


def _configure(config: dict[str, Any], _data_dir: Path) -> None:
    profile_like_default(config, "restricted", sans={
        "dns": {"allow": ["*.devices.example.com"], "deny": ["admin.devices.example.com"]},
        "ip": {"allow": ["10.0.0.0/8"]}}, subject={
        "allowed_attributes": ["CN", "C", {"OU": {"allow": ["Devices"]}}],
        "cn": {"deny": [r"re:ops\.devices\.example\.com"]}})
    # Patterns ignore case: a capital in a regex must not make it miss lower-cased names.
    config["profiles"]["restricted"]["sans"]["dns"]["deny"].append(
        r"re:Root\.devices\.example\.com")


def _add_user(data_dir: Path) -> None:
    run_cli(["user", "add", "restricted", "dev"], data_dir, stdin=PASSWORD + "\n")


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


@pytest.fixture(scope="module")
def http01() -> Iterator[_Http01]:
    web = _Http01(("127.0.0.1", 0), _Handler)
    web.tokens = {}
    threading.Thread(target=web.serve_forever, daemon=True).start()
    yield web
    web.shutdown()


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsTestServer]:
    server = DnsTestServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, http01: _Http01,
           dns: DnsTestServer) -> Iterator[GatehouseServer]:
    gh = start_configured(tmp_path_factory, "subject-names", _configure, setup=_add_user, env={
        "GATEHOUSE_ACME_HTTP01_PORT": str(http01.server_address[1]),
        "GATEHOUSE_ACME_TLSALPN01_PORT": str(free_port()),
        "GATEHOUSE_ACME_DNS_RESOLVER": dns.address,
        "GATEHOUSE_ACME_VALIDATION_ALLOW": "127.0.0.0/8,::1/128"})
    yield gh
    gh.stop()


@pytest.fixture(scope="module")
def tls(server: GatehouseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.https_url, timeout=60,
                      verify=ssl.create_default_context(cafile=str(server.root_pem))) as client:
        yield client


def _csr(cn: str | None, *, dns: Sequence[str] = (), **subject: str
         ) -> x509.CertificateSigningRequest:
    oids = {"O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
            "C": NameOID.COUNTRY_NAME}
    extra = [x509.NameAttribute(oids[k], v) for k, v in subject.items()]
    return make_csr(cn, dns=dns, extra_subject=extra)[0]


def _enroll(tls: httpx.Client, csr: x509.CertificateSigningRequest) -> httpx.Response:
    return tls.post(f"{EST}/simpleenroll", content=base64.encodebytes(csr_der(csr)),
                    auth=("dev", PASSWORD), headers={"Content-Type": "application/pkcs10"})


def _enroll_der(tls: httpx.Client, der: bytes) -> httpx.Response:
    return tls.post(f"{EST}/simpleenroll", content=base64.encodebytes(der),
                    auth=("dev", PASSWORD), headers={"Content-Type": "application/pkcs10"})


def _issued(response: httpx.Response) -> x509.Certificate:
    assert response.status_code == 200, response.text
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(response.content))[0]


def _dns_sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return ext.value.get_values_for_type(x509.DNSName)


# -- EST -------------------------------------------------------------------------------


@pytest.mark.parametrize(("cn", "reason"), [
    ("admin.devices.example.com", "admin.devices.example.com"),
    ("www.google.com", "www.google.com"),
    ("10.1.2.3.", "not a valid IP address"),
])
def test_est_cn_without_san_meets_the_san_rules(tls: httpx.Client, cn: str, reason: str) -> None:
    refused = _enroll(tls, _csr(cn))
    assert refused.status_code == 403, refused.text
    assert reason in refused.text


def test_est_host_cn_is_issued_and_joins_the_sans(tls: httpx.Client) -> None:
    cert = _issued(_enroll(tls, _csr("a1.devices.example.com")))
    assert cert.subject.rfc4514_string() == "CN=a1.devices.example.com"
    assert _dns_sans(cert) == ["a1.devices.example.com"]


def test_est_unlisted_subject_attribute_is_refused_not_trimmed(tls: httpx.Client) -> None:
    refused = _enroll(tls, _csr("a2.devices.example.com", O="system:masters"))
    assert refused.status_code == 403, refused.text
    assert "subject attribute O is not allowed" in refused.text
    bad_ou = _enroll(tls, _csr("a2.devices.example.com", OU="Admins"))
    assert bad_ou.status_code == 403 and "OU='Admins'" in bad_ou.text
    cert = _issued(_enroll(tls, _csr("a2.devices.example.com", OU="Devices", C="DE")))
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value \
        == "Devices"
    assert not cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)


def test_default_profile_keeps_what_common_clients_send(server: GatehouseServer,
                                                        tmp_path: Path) -> None:
    # scepclient, certmonger and MDM payloads put O, OU and C in their CSRs.
    path = tmp_path / "device.csr"
    path.write_bytes(csr_pem(_csr("Device 42", O="Example", OU="Devices", C="US")))
    out = tmp_path / "device.pem"
    run_cli(["certs", "issue", "--profile", "default", "--csr", str(path), "--out", str(out)],
            server.data_dir)
    cert = x509.load_pem_x509_certificates(out.read_bytes())[0]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example"


@pytest.mark.parametrize(("cn", "sans"), [("OPS.devices.example.com", ()),
                                          ("Device 7", ("root.devices.example.com",))])
def test_est_regex_deny_patterns_ignore_case(tls: httpx.Client, cn: str,
                                             sans: Sequence[str]) -> None:
    refused = _enroll(tls, _csr(cn, dns=sans))
    assert refused.status_code == 403, refused.text
    assert "is not allowed" in refused.text
    cert = _issued(_enroll(tls, _csr("ops7.devices.example.com",
                                     dns=["r7.devices.example.com"])))
    assert sorted(_dns_sans(cert)) == ["ops7.devices.example.com", "r7.devices.example.com"]


@pytest.mark.parametrize("cn", ["admin..devices.example.com", "-admin.devices.example.com",
                                "admin\u200b.devices.example.com",
                                "admin\u3002devices\u3002example\u3002com"],
                         ids=["empty-label", "leading-hyphen", "zero-width-space",
                              "ideographic-full-stop"])
def test_est_host_shaped_cn_must_be_a_valid_host_name(tls: httpx.Client, cn: str) -> None:
    refused = _enroll(tls, _csr(cn))
    assert refused.status_code == 403, refused.text
    assert "looks like a host name but is not a valid one" in refused.text


@pytest.mark.parametrize("cn", ["Device 42", "John Doe"])
def test_est_free_text_cn_is_still_issued(tls: httpx.Client, cn: str) -> None:
    cert = _issued(_enroll(tls, _csr(cn, dns=["ft.devices.example.com"])))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn


def _openssl_csr(tmp_path: Path, attributes: str) -> bytes:
    """`openssl req` with a [req_attributes]-style section, as a device or attacker runs it."""
    config = tmp_path / "req.cnf"
    config.write_text("[req]\ndistinguished_name = dn\nattributes = attrs\nprompt = no\n"
                      "[dn]\nCN = att.devices.example.com\n[attrs]\n" + attributes)
    out = tmp_path / "req.der"
    subprocess.run(["openssl", "req", "-new", "-config", str(config), "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "req.key"),
                    "-addext", "subjectAltName=DNS:att.devices.example.com",
                    "-outform", "DER", "-out", str(out)], check=True, capture_output=True,
                   timeout=60)
    return out.read_bytes()


def test_est_csr_attribute_a_ca_acts_on_is_refused(tls: httpx.Client, tmp_path: Path) -> None:
    """ESC6: ADCS honours ``SAN:upn=…`` in the enrollment name-value pairs attribute."""
    esc6 = _openssl_csr(tmp_path, "unstructuredName = router-1\n"
                        "1.3.6.1.4.1.311.13.2.1 = SAN:upn=administrator@corp.example\n")
    refused = _enroll_der(tls, esc6)
    assert refused.status_code == 403, refused.text
    assert "attribute Microsoft enrollment name-value pairs (1.3.6.1.4.1.311.13.2.1)" \
        in refused.text
    cert = _issued(_enroll_der(tls, _openssl_csr(tmp_path, "unstructuredName = router-1\n")))
    assert _dns_sans(cert) == ["att.devices.example.com"]


# -- CLI -------------------------------------------------------------------------------


def test_cli_issue_and_explain_judge_the_cn(server: GatehouseServer, tmp_path: Path) -> None:
    bad, good = tmp_path / "bad.csr", tmp_path / "good.csr"
    bad.write_bytes(csr_pem(_csr("admin.devices.example.com")))
    good.write_bytes(csr_pem(_csr("cli.devices.example.com")))
    refused = run_cli(["certs", "issue", "--profile", "restricted", "--csr", str(bad),
                       "--out", str(tmp_path / "bad.pem")], server.data_dir, check=False)
    assert refused.returncode != 0
    assert "admin.devices.example.com" in refused.stdout + refused.stderr
    assert not (tmp_path / "bad.pem").exists()
    explained = run_cli(["policy", "explain", "--profile", "restricted", "--csr", str(bad)],
                        server.data_dir, check=False)
    assert "denied" in explained.stdout.lower(), explained.stdout
    assert "approved" not in explained.stdout.lower()
    out = tmp_path / "good.pem"
    run_cli(["certs", "issue", "--profile", "restricted", "--csr", str(good), "--out", str(out)],
            server.data_dir)
    cert = x509.load_pem_x509_certificates(out.read_bytes())[0]
    assert _dns_sans(cert) == ["cli.devices.example.com"]
    approved = run_cli(["policy", "explain", "--profile", "restricted", "--csr", str(good)],
                       server.data_dir)
    assert "approved" in approved.stdout.lower(), approved.stdout


# -- ACME ------------------------------------------------------------------------------


def _wait(client: Client, url: str, until: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = client.post(url, None).json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def _ready_order(tls: httpx.Client, http01: _Http01, server: GatehouseServer,
                 name: str) -> tuple[Client, dict[str, Any], str]:
    client = Client(tls, server.https_url + "/acme/directory")
    assert client.register().status_code == 201
    response = client.post(client.directory["newOrder"],
                           {"identifiers": [{"type": "dns", "value": name}]})
    assert response.status_code == 201, response.text
    order_url, order = response.headers["Location"], response.json()
    for authz_url in order["authorizations"]:
        authz = client.post(authz_url, None).json()
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        http01.tokens[challenge["token"]] = client.key_authorization(challenge["token"])
        client.post(challenge["url"], {})
        assert _wait(client, authz_url, {"valid", "invalid"})["status"] == "valid"
    assert _wait(client, order_url, {"ready"})["status"] == "ready"
    return client, order, order_url


@pytest.mark.parametrize("subject", [{"O": "evil"}, {"O": "system:masters"},
                                     {"C": "US", "OU": "Ops"}],
                         ids=["O=evil", "O=system:masters", "C-and-OU"])
def test_acme_subject_beyond_one_identifier_cn_is_bad_csr(
        tls: httpx.Client, http01: _Http01, server: GatehouseServer,
        subject: dict[str, str]) -> None:
    name = f"acme-{len(subject)}-{next(iter(subject.values())).replace(':', '-')}.example.test"
    client, order, _ = _ready_order(tls, http01, server, name)
    response = client.post(order["finalize"],
                           {"csr": b64(csr_der(_csr(name, dns=[name], **subject)))})
    assert response.status_code == 400, response.text
    assert response.json()["type"] == PROBLEM + "badCSR"
    assert "subject" in response.json()["detail"]


def test_acme_cn_not_an_identifier_is_bad_csr(tls: httpx.Client, http01: _Http01,
                                              server: GatehouseServer) -> None:
    client, order, _ = _ready_order(tls, http01, server, "cn-other.example.test")
    csr = _csr("www.google.com", dns=["cn-other.example.test"])
    response = client.post(order["finalize"], {"csr": b64(csr_der(csr))})
    assert response.status_code == 400 and response.json()["type"] == PROBLEM + "badCSR"


def test_acme_cn_identifier_only_is_issued(tls: httpx.Client, http01: _Http01,
                                           server: GatehouseServer) -> None:
    name = "positive.example.test"
    client, order, order_url = _ready_order(tls, http01, server, name)
    response = client.post(order["finalize"], {"csr": b64(csr_der(_csr(name, dns=[name])))})
    assert response.status_code == 200, response.text
    final = _wait(client, order_url, {"valid", "invalid"})
    assert final["status"] == "valid", final
    pem = client.post(final["certificate"], None).content
    cert = x509.load_pem_x509_certificates(pem)[0]
    assert cert.subject.rfc4514_string() == f"CN={name}"
    assert _dns_sans(cert) == [name]
