"""Rule 11 over real sockets: the worst malformed inputs against ``gatehouse up``, each
beside its positive control, and the retry worker surviving a request that makes a
backend raise.

- ACME: a POST whose body nests 5,000 arrays is a 400 ``malformed`` problem (it was a
  RecursionError and a 500); a signed newAccount is 201.
- SCEP: a truncated PKIOperation is a 400 (or CertRep FAILURE); the whole message is
  CertRep SUCCESS.
- EST: a body that is not base64 is a 400; a base64 CSR is 200.
- OCSP: garbage is an OCSPResponse ``malformedRequest``; a real request is ``successful``.
- Retry worker: a stored request whose backend raises RuntimeError (the test-only
  ``test-explode`` backend, tests/support/explode_backend.py) ends ``failed`` with a
  generic reason, while another stored request on the same backend is still issued by
  the worker (before, the exception escaped the worker's tick every time, so no other
  request was ever retried).
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp

from tests.security.conftest import start_configured
from tests.security.odd_csrs import plain_csr
from tests.support.server import GatehouseServer, run_cli
from tests.unit.protocols.acme.signer import Client as AcmeClient
from tests.unit.protocols.scep.client import Client as ScepClient
from tests.unit.protocols.scep.client import ra_from_ca_ra_cert, self_signed

pytestmark = pytest.mark.e2e

PASSWORD = "sockets-" + "x" * 12
EXPLODE_CN = "explode.example.test"


def _edit(config: dict[str, Any], _data_dir: Path) -> None:
    default = config["profiles"]["default"]
    config["backends"]["explode"] = {"type": "test-explode", "explode_cn": EXPLODE_CN,
                                     "directory": "ca"}
    config["profiles"]["explode"] = {**default, "backend": "explode"}
    config["profiles"]["open"] = {**default, "scep": {"challenge": "none"}}
    config["retry"] = {**config.get("retry", {}), "base_delay": "1s", "poll_interval": "1s",
                       "lease": "5s"}


def _setup(data_dir: Path) -> None:
    for profile in ("default", "explode"):
        run_cli(["user", "add", profile, "dev"], data_dir, stdin=PASSWORD + "\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    gh = start_configured(tmp_path_factory, "malformed", _edit, setup=_setup)
    yield gh
    gh.stop()


@pytest.fixture(scope="module")
def https(server: GatehouseServer) -> Iterator[httpx.Client]:
    verify = ssl.create_default_context(cafile=str(server.root_pem))
    with httpx.Client(base_url=server.https_url, verify=verify, timeout=30) as client:
        yield client


def _no_tracebacks(server: GatehouseServer) -> None:
    log = server.log()
    assert "Traceback" not in log and '"level": "error"' not in log, log[-3000:]


# -- ACME ----------------------------------------------------------------------------------


def test_acme_deeply_nested_json_is_malformed(server: GatehouseServer, https: httpx.Client) -> None:
    acme = AcmeClient(https, f"{server.https_url}/acme/directory")
    body = b'{"protected":' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = https.post(acme.directory["newAccount"], content=body,
                          headers={"Content-Type": "application/jose+json"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:ietf:params:acme:error:malformed"
    # positive control: a signed newAccount
    assert acme.register().status_code == 201
    _no_tracebacks(server)


# -- SCEP ----------------------------------------------------------------------------------


def _scep_post(server: GatehouseServer, message: bytes) -> httpx.Response:
    return httpx.post(f"{server.http_url}/scep/open?operation=PKIOperation", content=message,
                      headers={"Content-Type": "application/x-pki-message"}, timeout=30)


def test_scep_truncated_message_is_refused(server: GatehouseServer) -> None:
    answer = httpx.get(f"{server.http_url}/scep/open", params={"operation": "GetCACert"},
                       timeout=30)
    ra_der, _ = ra_from_ca_ra_cert(answer.content)
    key = rsa.generate_private_key(65537, 2048)
    client = ScepClient(ra_der=ra_der, key=key, signer=self_signed(key))
    message = client.pkcs_req(plain_csr("scep-sockets.example.test"))
    for cut in (len(message) // 2, len(message) - 1, 40):
        response = _scep_post(server, message[:cut])
        if response.status_code == 200:
            assert client.read(response.content).status == "2"  # FAILURE
        else:
            assert response.status_code == 400, response.text
    # positive control: the whole message
    response = _scep_post(server, message)
    assert response.status_code == 200
    reply = client.read(response.content)
    assert reply.status == "0" and reply.certificates
    _no_tracebacks(server)


# -- EST -----------------------------------------------------------------------------------


def _est(https: httpx.Client, body: bytes, profile: str | None = None) -> httpx.Response:
    label = f"{profile}/" if profile else ""
    return https.post(f"/.well-known/est/{label}simpleenroll", content=body,
                      auth=("dev", PASSWORD), headers={"Content-Type": "application/pkcs10"})


def test_est_bad_base64_is_400(server: GatehouseServer, https: httpx.Client) -> None:
    good = base64.encodebytes(plain_csr("est-sockets.example.test"))
    for bad in (b"!!not base64!!", good[:-5] + b"*" + good[-4:], b"=" * 8, b"\xff\xfe"):
        response = _est(https, bad)
        assert response.status_code == 400, (bad, response.text)
    # positive control
    assert _est(https, good).status_code == 200
    _no_tracebacks(server)


# -- OCSP ----------------------------------------------------------------------------------


def _issued_and_issuer(https: httpx.Client) -> tuple[x509.Certificate, x509.Certificate]:
    response = _est(https, base64.encodebytes(plain_csr("ocsp-sockets.example.test")))
    assert response.status_code == 200, response.text
    signed = cms.ContentInfo.load(base64.b64decode(response.content))["content"]
    leaf = x509.load_der_x509_certificate(signed["certificates"][0].chosen.dump())
    chain = cms.ContentInfo.load(base64.b64decode(https.get("/.well-known/est/cacerts").content))
    issuer = next(c for c in (x509.load_der_x509_certificate(c.chosen.dump())
                              for c in chain["content"]["certificates"])
                  if c.subject == leaf.issuer)
    return leaf, issuer


def test_ocsp_garbage_is_malformed_request(server: GatehouseServer, https: httpx.Client) -> None:
    for garbage in (b"\x30\x03\x02\x01", b"garbage", b"\x30\x84\xff\xff\xff\xff", b""):
        response = httpx.post(f"{server.http_url}/ocsp/internal", content=garbage, timeout=30,
                              headers={"Content-Type": "application/ocsp-request"})
        assert response.status_code == 200, response.text
        assert ocsp.load_der_ocsp_response(response.content).response_status \
            is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # positive control: a real request for a certificate the gateway issued
    leaf, issuer = _issued_and_issuer(https)
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    response = httpx.post(f"{server.http_url}/ocsp/internal", timeout=30,
                          content=request.public_bytes(serialization.Encoding.DER),
                          headers={"Content-Type": "application/ocsp-request"})
    answer = ocsp.load_der_ocsp_response(response.content)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    _no_tracebacks(server)


# -- the retry worker ----------------------------------------------------------------------


def _requests(server: GatehouseServer, token: str) -> dict[str, dict[str, Any]]:
    verify = ssl.create_default_context(cafile=str(server.root_pem))
    response = httpx.get(f"{server.https_url}/admin/api/requests",
                         params={"profile": "explode"}, verify=verify, timeout=30,
                         headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return {item["subject"]: item for item in response.json()["items"]}


def _wait_for(server: GatehouseServer, token: str, subject: str, states: set[str],
              timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    item: dict[str, Any] = {}
    while time.monotonic() < deadline:
        item = _requests(server, token).get(subject, {})
        if item.get("state") in states:
            return item
        time.sleep(0.5)
    raise AssertionError(f"{subject} still {item.get('state')}: {json.dumps(item)}\n"
                         f"{server.log()[-3000:]}")


def test_retry_worker_fails_the_exploding_request_and_retries_the_others(
        server: GatehouseServer, https: httpx.Client) -> None:
    token = run_cli(["token", "create", "--role", "auditor"], server.data_dir).stdout.strip()
    # First attempt: the backend is "unavailable", the request is stored for a retry.
    response = _est(https, base64.encodebytes(plain_csr(EXPLODE_CN)), "explode")
    assert response.status_code in (202, 503), response.text
    # Let the worker meet the exploding request (before the fix: on every tick).
    time.sleep(3)
    response = _est(https, base64.encodebytes(plain_csr("survivor.example.test")), "explode")
    assert response.status_code in (202, 503), response.text
    exploded = _wait_for(server, token, f"CN={EXPLODE_CN}", {"failed"})
    assert exploded["reason"] == "internal error while processing the request"
    assert "test-explode" not in json.dumps(exploded)  # the cause stays in the log
    # positive control: the other stored request is retried and issued by the worker
    survivor = _wait_for(server, token, "CN=survivor.example.test", {"issued"})
    assert survivor["certificate_serial"]
    log = server.log()
    assert log.count("request failed unexpectedly") == 1, log[-3000:]
    assert "retry worker tick failed" not in log
