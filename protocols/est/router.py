"""EST routes (RFC 7030 §3.2.2): ``/.well-known/est/[<label>/]<operation>``.

A small ASGI app mounted into the FastAPI application: the EST hot path avoids
FastAPI's dependency machinery and request objects; the body arrives already bounded
by BodyLimitMiddleware (413).  ``/cacerts`` and ``/csrattrs`` need no authentication
(RFC 7030 §4.1.1 bootstrap, §4.5); every other operation authenticates per the
profile's ``est.auth``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from gateway.errors import ErrorKind, GatewayError
from gateway.runtime import Gateway
from protocols.est import csrattrs
from protocols.est.auth import Authenticator
from protocols.est.call import Call, Reply
from protocols.est.enroll import Enroller
from protocols.est.errors import est_error
from protocols.est.fullcmc import fullcmc
from protocols.est.serverkeygen import serverkeygen
from protocols.est.wire import CERTS_ONLY, CSRATTRS, UnsupportedMediaType, b64, certs_only_b64

log = logging.getLogger("gatehouse.est")

PREFIX = "/.well-known/est"
CACERTS_TTL = 60.0  # seconds: a CA rollover shows up within a minute

Handler = Callable[[Call], Awaitable[Reply]]


class EstApp:
    """Dispatches EST operations for every profile that offers EST."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._labels: dict[str, str] = {}
        for name, profile in gateway.config.profiles.items():
            if profile.est.enabled:
                self._labels[profile.est.label or name] = name
        default = gateway.config.default_profile
        self._default = default if gateway.config.profiles[default].est.enabled else None
        self._auth = Authenticator(gateway)
        self._enroller = Enroller(gateway, self._auth)
        self._cacerts: dict[str, tuple[float, bytes]] = {}
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", "cacerts"): self._get_cacerts,
            ("GET", "csrattrs"): self._get_csrattrs,
            ("POST", "simpleenroll"): self._enroller.simpleenroll,
            ("POST", "simplereenroll"): self._enroller.simplereenroll,
            ("POST", "serverkeygen"): partial(serverkeygen, self._enroller),
            ("POST", "fullcmc"): partial(fullcmc, self._enroller),
        }
        self._operations = {op for _method, op in self._routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        reply = await self._handle(scope, receive)
        status, headers, body = reply
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> Reply:
        path: str = scope["path"]
        rest = path[path.find(PREFIX) + len(PREFIX):] if PREFIX in path else path
        parts = [p for p in rest.split("/") if p]
        label = None
        if len(parts) == 2:
            label, operation = parts
        elif len(parts) == 1:
            operation = parts[0]
        else:
            return _text(404, "unknown EST path")
        profile = self._default if label is None else self._labels.get(label)
        if profile is None or operation not in self._operations:
            return _text(404, "unknown EST label or operation")
        method = scope["method"]
        handler = self._routes.get((method if method != "HEAD" else "GET", operation))
        if handler is None:
            allowed = "GET" if operation in ("cacerts", "csrattrs") else "POST"
            return 405, [(b"allow", allowed.encode()), (b"content-type", b"text/plain")], \
                b"method not allowed\n"
        body = await _read_body(receive) if method == "POST" else b""
        headers = dict(scope["headers"])
        call = Call(scope, headers, body, profile, label or profile,
                    self._gateway.config.profiles[profile].est)
        try:
            return await handler(call)
        except GatewayError as exc:
            if exc.kind is ErrorKind.INTERNAL:
                log.error("EST internal error", extra={"error": exc.detail})
            status, extra, text = est_error(exc, realm=f"gatehouse EST {call.label}")
            return status, [(b"content-type", b"text/plain; charset=utf-8"), *extra], text
        except UnsupportedMediaType as exc:
            return _text(415, exc.detail)

    # -- unauthenticated operations ----------------------------------------------------

    async def _get_cacerts(self, call: Call) -> Reply:
        """RFC 7030 §4.1: the profile's issuing chain (and an announced successor issuing
        CA, if any), certs-only, base64."""
        backend_name = self._gateway.config.profiles[call.profile].backend
        cached = self._cacerts.get(backend_name)
        now = time.monotonic()
        if cached is None or cached[0] < now:
            ca = self._gateway.ca
            chain = await ca.chain_for(call.profile)
            # A successor issuing CA announced ahead of its switch: devices learn it now.
            chain.extend(ca.next_chain_for(call.profile) or [])
            ders = list(dict.fromkeys(c.public_bytes(Encoding.DER) for c in chain))
            body = certs_only_b64(ders)
            cached = (now + CACERTS_TTL, body)
            self._cacerts[backend_name] = cached
        return 200, [(b"content-type", CERTS_ONLY.encode()),
                     (b"content-transfer-encoding", b"base64")], cached[1]

    async def _get_csrattrs(self, call: Call) -> Reply:
        """RFC 7030 §4.5: CSR attributes from the profile; 204 when there are none."""
        der = csrattrs.build(call.settings)
        if der is None:
            return 204, [], b""
        return 200, [(b"content-type", CSRATTRS.encode()),
                     (b"content-transfer-encoding", b"base64")], b64(der)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _text(status: int, text: str) -> Reply:
    return status, [(b"content-type", b"text/plain; charset=utf-8")], (text + "\n").encode()


def mount(app: FastAPI, gateway: Gateway) -> None:
    """Serve EST under /.well-known/est/ (gateway.app calls this at start-up)."""
    app.mount(PREFIX, _Asgi(EstApp(gateway)))
    # Matched first: the enrollment hot path then skips every other route's regex.
    app.router.routes.insert(0, app.router.routes.pop())


class _Asgi:
    """Keeps the mounted object a plain ASGI callable for Starlette's Mount."""

    def __init__(self, inner: EstApp) -> None:
        self._inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner(scope, receive, send)


__all__: list[Any] = ["EstApp", "mount"]
