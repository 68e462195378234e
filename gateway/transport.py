"""Which listener may serve what (docs/security.md, rules 1 and 9).

EST, ACME, the admin API and the console carry credentials, private keys or session
cookies, so they answer only on the HTTPS listener.  The plain-HTTP listener serves what
is protected at the message level or public: SCEP (RFC 8894 §2: the payload is CMS
signed and enveloped), CRLs, OCSP (RFC 6960 responses are signed), AIA CA certificates
(RFC 5280 §4.2.2.1 expects http), and the unauthenticated health and metrics endpoints.
Everything else gets a one-line refusal in its protocol's own error format, before any
handler, credential check or body parsing.

Every HTTPS answer carries ``Strict-Transport-Security`` (RFC 6797), so a browser that
has seen the console once never sends its cookie over plain HTTP again.

The listener is read from the ASGI scope's ``scheme``: uvicorn runs with
``proxy_headers=False``, so it is ``https`` exactly when the connection is TLS.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Served on plain HTTP: exact paths and path prefixes (a prefix ends with '/').
PLAIN_HTTP_PATHS = frozenset({"/scep", "/cgi-bin/pkiclient.exe", "/healthz", "/readyz",
                              "/metrics"})
PLAIN_HTTP_PREFIXES = ("/scep/", "/crl/", "/ocsp/", "/ca/")

HSTS = b"max-age=31536000"  # one year; no includeSubDomains: other hosts are not ours
REFUSAL_STATUS = 403


def plain_http_allowed(path: str) -> bool:
    """True when ``path`` may be answered on the plain-HTTP listener.

    Dot segments are refused outright: nothing the gateway serves needs them, and they
    must not let a prefix check and the router disagree about the target.
    """
    if any(segment in (".", "..") for segment in path.split("/")):
        return False
    return path in PLAIN_HTTP_PATHS or path.startswith(PLAIN_HTTP_PREFIXES)


def _refusal(path: str, https_url: str) -> tuple[str, bytes]:
    """The content type and body that refuse ``path`` on plain HTTP, per protocol."""
    where = f"use {https_url}{path}"
    if path.startswith("/acme/") or path == "/acme":
        # RFC 8555 §6.7: ACME errors are problem documents.
        problem = {"type": "urn:ietf:params:acme:error:malformed",
                   "detail": f"ACME is served only over HTTPS: {where}",
                   "status": REFUSAL_STATUS}
        return "application/problem+json", json.dumps(problem).encode()
    if path.startswith("/admin/api/"):
        # The admin API's own error format (gateway.admin.errors).
        body = {"error": "forbidden", "detail": f"the admin API is only served over HTTPS: {where}"}
        return "application/json", json.dumps(body).encode()
    if path.startswith("/.well-known/est/") or path == "/.well-known/est":
        text = f"EST is served only over HTTPS: {where}"  # RFC 7030 §3.3: TLS is mandatory
    elif path.startswith(("/console", "/admin")):
        text = f"the console and the admin API are served only over HTTPS: {where}"
    else:
        text = ("plain HTTP serves only SCEP, CRLs, OCSP, CA certificates and health; "
                f"{where}")
    return "text/plain; charset=utf-8", (text + "\n").encode()


class TransportPolicyMiddleware:
    """Refuse on plain HTTP what only HTTPS may serve; add HSTS to every HTTPS answer."""

    def __init__(self, app: ASGIApp, https_url: str) -> None:
        self.app = app
        self.https_url = https_url.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("scheme") == "https":
            await self.app(scope, receive, _with_hsts(send))
            return
        path: str = scope.get("path", "")
        if plain_http_allowed(path):
            await self.app(scope, receive, send)
            return
        # Printable ASCII only: the URL is shown to a person, not followed.
        shown = "".join(c if " " < c < "\x7f" else "?" for c in path[:200])
        content_type, body = _refusal(shown, self.https_url)
        await send({"type": "http.response.start", "status": REFUSAL_STATUS,
                    "headers": [(b"content-type", content_type.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _with_hsts(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(name, value) for name, value in message.get("headers", [])
                       if name.lower() != b"strict-transport-security"]
            headers.append((b"strict-transport-security", HSTS))
            message = {**message, "headers": headers}
        await send(message)

    return sending
