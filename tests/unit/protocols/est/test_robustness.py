"""Hostile input to every EST operation: client errors, never a 500 (in-process ASGI)."""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from gateway.errors import ErrorKind, GatewayError
from gateway.middleware import BodyLimitMiddleware, UnexpectedErrorMiddleware
from gateway.runtime import Gateway
from gateway.setup import initialize
from protocols.est.call import load_csr
from protocols.est.router import mount
from tests.support.pki import csr_der, make_csr
from tests.support.server import run_cli

PASSWORD = "robust-" + os.urandom(6).hex()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("est-robust") / "data"
    initialize(data_dir, https="127.0.0.1:8443", http="127.0.0.1:8080")
    run_cli(["user", "add", "default", "dev"], data_dir, stdin=PASSWORD + "\n")
    gateway = Gateway.from_data_dir(data_dir)
    app = FastAPI()
    mount(app, gateway)
    app.add_middleware(BodyLimitMiddleware, limit=256 * 1024)
    app.add_middleware(UnexpectedErrorMiddleware)
    with TestClient(app, base_url="https://testserver/.well-known/est/",
                    raise_server_exceptions=False) as test_client:
        yield test_client
    gateway.db.dispose()


def test_csr_with_an_invalid_version_is_malformed() -> None:
    der = bytearray(csr_der(make_csr("v.example.test")[0]))
    der[der.index(b"\x02\x01\x00") + 2] = 0x55
    with pytest.raises(GatewayError) as caught:
        load_csr(bytes(der))
    assert caught.value.kind is ErrorKind.MALFORMED


@pytest.mark.parametrize(("operation", "content_type"), [
    ("simpleenroll", "application/pkcs10"), ("simplereenroll", "application/pkcs10"),
    ("serverkeygen", "application/pkcs10"), ("fullcmc", "application/pkcs7-mime")])
def test_mutated_and_garbage_bodies_get_client_errors(client: TestClient, operation: str,
                                                      content_type: str) -> None:
    rng = random.Random(operation)
    good = csr_der(make_csr("fuzz.example.test")[0])
    bodies = [b"", b"=", b"MA==", base64.b64encode(b"\x30\x80"), base64.b64encode(good[:40]),
              base64.b64encode(good + b"\x00"), "é".encode() * 9,
              base64.b64encode(b"\x30\x82\xff\xff" + rng.randbytes(30))]
    for _ in range(150):
        mutated = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        bodies.append(base64.b64encode(bytes(mutated)))
    for body in bodies:
        response = client.post(operation, content=body, auth=("dev", PASSWORD),
                               headers={"Content-Type": content_type})
        assert response.status_code < 500, (body, response.text)
        assert response.status_code in (200, 400, 401, 403), response.text


def test_odd_credentials_and_paths(client: TestClient) -> None:
    body = base64.b64encode(csr_der(make_csr("odd.example.test")[0]))
    for value in (b"Basic \xff\xfe", b"Basic " + base64.b64encode(b"\xff:\xfe"), b"Basic",
                  b"Digest abc"):
        response = client.post("simpleenroll", content=body, headers={
            "Content-Type": "application/pkcs10", "Authorization": value})  # type: ignore[dict-item]
        assert response.status_code == 401
    response = client.post("simpleenroll", content=body, auth=("dev", PASSWORD), headers={
        "Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "gzip"})
    assert response.status_code == 400
    for path in ("cacerts/x", "a/b/c", "x" * 300 + "/cacerts", "nope"):
        assert client.get(path).status_code == 404
