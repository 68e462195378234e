"""The admin API's one error format: ``{"error": kind, "detail": text}`` with a 4xx status.

This module is the admin API's single mapping from the core's ``ErrorKind`` to HTTP
(RFC 9110 §15); ``tests/unit/gateway/admin`` checks it covers every kind.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator

from gateway.errors import ErrorKind, GatewayError


class ErrorBody(BaseModel):
    """Every admin API error."""

    error: str
    detail: str


STATUS_OF_KIND: dict[ErrorKind, int] = {
    ErrorKind.MALFORMED: 400,
    ErrorKind.BAD_CSR: 400,
    ErrorKind.BAD_SIGNATURE: 400,
    ErrorKind.UNSUPPORTED_KEY: 400,
    ErrorKind.POLICY_DENIED: 403,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.UNKNOWN_PROFILE: 404,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.CONFLICT: 409,
    ErrorKind.PAYLOAD_TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED: 400,
    ErrorKind.BACKEND_UNAVAILABLE: 503,
    ErrorKind.BACKEND_REJECTED: 422,
    ErrorKind.INTERNAL: 500,
}


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
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return cls(STATUS_OF_KIND[exc.kind], exc.kind.value, exc.detail, headers)


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
            403: "The token's role does not allow this, or policy denied it",
            404: "Not found", 409: "The resource's state does not allow this",
            413: "Input too large", 422: "Invalid parameters, or the CA refused",
            429: "Rate limited", 503: "The CA backend is unavailable"}
    chosen = sorted({400, 401, 403, 422, *statuses})
    return {status: {"model": ErrorBody, "description": text[status]} for status in chosen}


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def iso_datetime(value: object) -> object:
    """Take RFC 3339 date-times only (pydantic alone would also read Unix times)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2030-01-31T00:00:00Z")
    return value


DateTimeParam = Annotated[dt.datetime, BeforeValidator(iso_datetime)]
