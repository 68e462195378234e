"""gateway.transport: which paths the plain-HTTP listener serves, and how it refuses."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message, Receive, Scope, Send

from gateway.transport import TransportPolicyMiddleware, plain_http_allowed


@pytest.mark.parametrize("path", ["/scep", "/scep/intune", "/scep/x/pkiclient.exe",
                                  "/cgi-bin/pkiclient.exe", "/crl/internal.crl",
                                  "/crl/internal/1.crl", "/ocsp/internal", "/ca/internal/1.cer",
                                  "/healthz", "/readyz", "/metrics"])
def test_served_on_plain_http(path: str) -> None:
    assert plain_http_allowed(path)


@pytest.mark.parametrize("path", ["/", "/.well-known/est/cacerts", "/acme/directory",
                                  "/admin/api/certificates", "/admin/docs", "/console/",
                                  "/scepx", "/scep/../acme/directory", "/crl/./x",
                                  "/crl/..", "/metrics/x", "/healthz/"])
def test_refused_on_plain_http(path: str) -> None:
    assert not plain_http_allowed(path)


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(scheme: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = TransportPolicyMiddleware(_app, https_url="https://pki.example.com/")
    asyncio.run(middleware({"type": "http", "scheme": scheme, "path": path, "method": "GET",
                            "headers": []}, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_each_protocol_gets_its_own_refusal() -> None:
    status, headers, body = _call("http", "/acme/directory")
    assert status == 403 and headers[b"content-type"] == b"application/problem+json"
    problem = json.loads(body)
    assert problem["type"] == "urn:ietf:params:acme:error:malformed"
    assert "https://pki.example.com/acme/directory" in problem["detail"]
    status, headers, body = _call("http", "/.well-known/est/simpleenroll")
    assert status == 403 and headers[b"content-type"].startswith(b"text/plain")
    assert body.startswith(b"EST is served only over HTTPS") and body.count(b"\n") == 1
    status, headers, body = _call("http", "/admin/api/certificates")
    assert status == 403 and json.loads(body)["error"] == "forbidden"
    status, _headers, body = _call("http", "/console/\x1b[31mx")
    assert status == 403 and b"\x1b" not in body


def test_hsts_on_https_only() -> None:
    status, headers, body = _call("https", "/acme/directory")
    assert status == 200 and body == b"ok"
    assert headers[b"strict-transport-security"] == b"max-age=31536000"
    status, headers, _body = _call("http", "/healthz")
    assert status == 200 and b"strict-transport-security" not in headers
