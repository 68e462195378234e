"""The admin API's one error format: ``{"error": kind, "detail": text}`` with a 4xx status.

The status of a ``GatewayError`` is the core's (``gateway.errors.EDGE_RULES``, shared by
every HTTP edge); ``tests/unit/test_error_edges.py`` checks every kind.  Operators see the
detail as raised (they also see it in the log and the audit trail).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator

from gateway.errors import ErrorKind, GatewayError, http_status, retry_after


class ErrorBody(BaseModel):
    """Every admin API error."""

    error: str
    detail: str


class AdminError(Exception):
    """An admin API answer that is not a success."""

    def __init__(self, status: int, error: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}

    @classmethod
    def of(cls, exc: GatewayError) -> AdminError:
        retry = retry_after(exc)
        headers = {"Retry-After": str(retry)} if retry else None
        return cls(http_status(exc.kind), exc.kind.value, exc.detail, headers)

    @classmethod
    def kind(cls, kind: ErrorKind, detail: str,
             headers: dict[str, str] | None = None) -> AdminError:
        """An admin API refusal of ``kind``, with the core's status for it."""
        error = cls.of(GatewayError(kind, detail))
        error.headers.update(headers or {})
        return error


def error_response(exc: AdminError) -> JSONResponse:
    return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status,
                        headers=exc.headers)


def describe_validation(errors: list[Any]) -> str:
    """A one-line description of pydantic/FastAPI validation errors."""
    parts = []
    for error in errors[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{location or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error statuses a route may answer."""
    text = {400: "Malformed input", 401: "Missing or invalid token",
            403: "The token's role does not allow this, policy denied it, or the CA refused",
            404: "Not found", 409: "The resource's state does not allow this",
            413: "Input too large", 422: "Invalid parameters", 429: "Rate limited",
            501: "The CA backend cannot do this", 503: "The CA backend is unavailable"}
    chosen = sorted({400, 401, 403, 422, *statuses})
    return {status: {"model": ErrorBody, "description": text[status]} for status in chosen}


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def iso_datetime(value: object) -> object:
    """Take RFC 3339 date-times only (pydantic alone would also read Unix times)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2030-01-31T00:00:00Z")
    return value


DateTimeParam = Annotated[dt.datetime, BeforeValidator(iso_datetime)]
