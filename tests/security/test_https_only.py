"""Rule 1: EST, ACME, the admin API and the console answer only on HTTPS.

The plain-HTTP listener serves SCEP, CRLs, OCSP, AIA certificates and health/metrics; it
refuses everything else with the protocol's own error (EST: text 403, ACME: a problem
document, admin API: its JSON error) before any credential is looked at.  Each refusal
sits beside the same request over HTTPS, which succeeds.
"""

from __future__ import annotations

import base64
import http.client
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from tests.security.conftest import start_configured
from tests.support.pki import csr_der, make_csr
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e

PASSWORD = "Http-only-test-pass-1"
EST = "/.well-known/est"


def _add_user(data_dir: Path) -> None:
    run_cli(["user", "add", "default", "dev"], data_dir, stdin=PASSWORD + "\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    gh = start_configured(tmp_path_factory, "https-only", setup=_add_user)
    yield gh
    gh.stop()


@pytest.fixture(scope="module")
def tls(server: GatehouseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.https_url, timeout=60,
                      verify=ssl.create_default_context(cafile=str(server.root_pem))) as client:
        yield client


@pytest.fixture(scope="module")
def plain(server: GatehouseServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def token(server: GatehouseServer) -> str:
    return run_cli(["token", "create", "--role", "admin", "--name", "https-only"],
                   server.data_dir).stdout.strip()


def _csr_body(cn: str) -> bytes:
    csr, _key = make_csr(cn, dns=[cn])
    return base64.encodebytes(csr_der(csr))


def _est_post(client: httpx.Client, operation: str, cn: str) -> httpx.Response:
    return client.post(f"{EST}/{operation}", content=_csr_body(cn), auth=("dev", PASSWORD),
                       headers={"Content-Type": "application/pkcs10"})


def _path(url: str) -> str:
    assert url.startswith("http://"), url
    return "/" + url.split("/", 3)[3]


def _assert_est_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert "EST is served only over HTTPS" in answer.text
    assert "pkcs7" not in answer.headers["content-type"]


# -- EST -----------------------------------------------------------------------------------

def test_est_simpleenroll_with_basic_auth_refused_on_http(plain: httpx.Client,
                                                          tls: httpx.Client) -> None:
    _assert_est_refused(_est_post(plain, "simpleenroll", "plain.example.test"))
    # Positive control: the same request over TLS gets its certificate.
    answer = _est_post(tls, "simpleenroll", "tls.example.test")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/pkcs7-mime")
    certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer.content))
    assert certs[0].subject.rfc4514_string() == "CN=tls.example.test"


def test_est_serverkeygen_never_sends_a_key_over_http(plain: httpx.Client,
                                                      tls: httpx.Client) -> None:
    refused = _est_post(plain, "serverkeygen", "skg-plain.example.test")
    _assert_est_refused(refused)
    assert b"pkcs8" not in refused.content and b"PRIVATE" not in refused.content
    answer = _est_post(tls, "serverkeygen", "skg-tls.example.test")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("multipart/mixed")
    assert b"application/pkcs8" in answer.content


def test_est_cacerts_refused_on_http(plain: httpx.Client, tls: httpx.Client) -> None:
    _assert_est_refused(plain.get(f"{EST}/cacerts"))
    answer = tls.get(f"{EST}/cacerts")
    assert answer.status_code == 200
    assert pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer.content))


def test_dot_segments_do_not_smuggle_est_through_an_allowed_prefix(
        server: GatehouseServer) -> None:
    for path in (f"/scep/..{EST}/cacerts", f"/crl/../..{EST}/cacerts", "/ocsp/%2e%2e/acme/directory"):
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read()
        finally:
            connection.close()
        assert answer.status == 403, (path, answer.status, body)
        assert b"only" in body and not answer.getheader("content-type", "").startswith(
            "application/pkcs7")


# -- ACME ----------------------------------------------------------------------------------

def test_acme_directory_refused_on_http_as_a_problem_document(plain: httpx.Client,
                                                              tls: httpx.Client) -> None:
    for path in ("/acme/directory", "/acme/default/directory", "/acme/default/new-nonce"):
        answer = plain.get(path)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert problem["type"] == "urn:ietf:params:acme:error:malformed"
        assert problem["status"] == 403 and "only over HTTPS" in problem["detail"]
        assert "http://" not in answer.text
    # Positive control: over TLS every URL of the directory is https://.
    directory = tls.get("/acme/directory")
    assert directory.status_code == 200
    urls = [value for value in directory.json().values() if isinstance(value, str)]
    assert urls and all(url.startswith("https://") for url in urls), urls
    assert tls.head(directory.json()["newNonce"]).headers.get("replay-nonce")


# -- admin API, docs and console -----------------------------------------------------------

def test_admin_api_and_docs_refused_on_http_even_with_a_token(plain: httpx.Client,
                                                              tls: httpx.Client,
                                                              token: str) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    answer = plain.get("/admin/api/certificates", headers=bearer)
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden" and "HTTPS" in answer.json()["detail"]
    for path in ("/admin/openapi.json", "/admin/docs"):
        refused = plain.get(path)
        assert refused.status_code == 403 and "only over HTTPS" in refused.text, path
    assert tls.get("/admin/api/certificates", headers=bearer).status_code == 200
    assert tls.get("/admin/openapi.json").json()["paths"]


def test_console_refused_on_http(plain: httpx.Client, tls: httpx.Client) -> None:
    for method, path in (("GET", "/console/login"), ("POST", "/console/login"),
                         ("GET", "/console/")):
        answer = plain.request(method, path, data={"token": "gh_x.y"} if method == "POST"
                               else None)
        assert answer.status_code == 403, (method, path, answer.status_code)
        assert "only over HTTPS" in answer.text
        assert "set-cookie" not in answer.headers
    assert tls.get("/console/login").status_code == 200


def test_unknown_paths_on_http_get_a_one_line_refusal(plain: httpx.Client) -> None:
    answer = plain.get("/anything/else")
    assert answer.status_code == 403
    assert answer.text.count("\n") == 1 and "https://" in answer.text


# -- what plain HTTP still serves ----------------------------------------------------------

def test_scep_crl_ocsp_aia_and_health_still_served_on_http(plain: httpx.Client,
                                                           tls: httpx.Client) -> None:
    caps = plain.get("/scep", params={"operation": "GetCACaps"})
    assert caps.status_code == 200 and "SHA-256" in caps.text
    ca = plain.get("/scep", params={"operation": "GetCACert"})
    assert ca.status_code == 200 and ca.headers["content-type"].startswith("application/x-x509")
    assert plain.get("/healthz").json() == {"status": "ok"}
    assert plain.get("/metrics").status_code == 200

    enrolled = _est_post(tls, "simpleenroll", "revocable.example.test")
    assert enrolled.status_code == 200, enrolled.text
    leaf = pkcs7.load_der_pkcs7_certificates(base64.b64decode(enrolled.content))[0]
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    crl_url = str(cdp[0].full_name[0].value)  # type: ignore[index]
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    by_method = {d.access_method: str(d.access_location.value) for d in aia}
    ca_issuers = by_method[AuthorityInformationAccessOID.CA_ISSUERS]
    ocsp_url = by_method[AuthorityInformationAccessOID.OCSP]
    # The URLs name the configured public HTTP URL; the test server listens elsewhere.
    crl_url, ca_issuers, ocsp_url = (_path(url) for url in (crl_url, ca_issuers, ocsp_url))

    crl = plain.get(crl_url)
    assert crl.status_code == 200
    x509.load_der_x509_crl(crl.content)
    issuer_answer = plain.get(ca_issuers)
    assert issuer_answer.status_code == 200
    issuer = x509.load_der_x509_certificate(issuer_answer.content)
    assert issuer.subject == leaf.issuer

    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA256()).build()
    answer = plain.post(ocsp_url, content=request.public_bytes(serialization.Encoding.DER),
                        headers={"Content-Type": "application/ocsp-request"})
    assert answer.status_code == 200
    response = ocsp.load_der_ocsp_response(answer.content)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    # Plain-HTTP answers never carry HSTS (RFC 6797 §7.2); HTTPS ones do.
    assert "strict-transport-security" not in answer.headers
    assert re.fullmatch(r"max-age=\d+", tls.get("/healthz").headers["strict-transport-security"])
