"""ASGI middleware: request body size limit and the one handler for the unexpected."""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("gatehouse.http")


async def _send_plain(send: Send, status: int, text: str, content_type: str = "text/plain") -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _send_too_large(scope: Scope, send: Send, limit: int) -> None:
    detail = f"request body larger than {limit} bytes"
    if scope.get("path", "").startswith("/acme"):
        # RFC 8555 §6.7: errors are problem documents.
        problem = {"type": "urn:ietf:params:acme:error:malformed", "detail": detail,
                   "status": 413}
        await _send_plain(send, 413, json.dumps(problem), "application/problem+json")
    else:
        await _send_plain(send, 413, detail + "\n")


class BodyLimitMiddleware:
    """Read the whole body (up to ``limit`` bytes) before the app sees it; else 413.

    Enrollment bodies are small (a CSR, a CMS message, a JWS), so buffering them costs
    little and no handler ever parses a partial or oversized input.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_plain(send, 400, "bad Content-Length\n")
                    return
                if declared > self.limit:
                    await _send_too_large(scope, send, self.limit)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_too_large(scope, send, self.limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class UnexpectedErrorMiddleware:
    """The one place an unexpected exception becomes a 500: logged, never rendered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:  # the single catch-all of the service (STYLE.md habit 3)
            log.exception("unhandled error", extra={"path": scope.get("path")})
            if not started:
                await _send_plain(send, 500, "internal error\n")
