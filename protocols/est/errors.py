"""The mapping from the core's error kinds to EST answers (RFC 7030 §4.2.3, §3.2.3):
HTTP statuses for the simple operations, CMCFailInfo inside Full PKI Responses.

EST has no error document: an HTTP status, a one-line ``text/plain`` reason and, where
it helps the client, ``Retry-After`` or ``WWW-Authenticate``.
"""

from __future__ import annotations

from gateway.errors import ErrorKind, GatewayError, client_detail
from protocols.est.cmc import CMCFailInfo

STATUS: dict[ErrorKind, int] = {
    ErrorKind.MALFORMED: 400,
    ErrorKind.BAD_CSR: 400,
    ErrorKind.BAD_SIGNATURE: 400,
    ErrorKind.UNSUPPORTED_KEY: 403,
    ErrorKind.POLICY_DENIED: 403,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.UNKNOWN_PROFILE: 404,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.CONFLICT: 409,
    ErrorKind.PAYLOAD_TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED: 501,
    ErrorKind.BACKEND_UNAVAILABLE: 503,
    # The CA refused for good: retrying the same request cannot help.
    ErrorKind.BACKEND_REJECTED: 403,
    ErrorKind.INTERNAL: 500,
}

_DEFAULT_RETRY = {ErrorKind.RATE_LIMITED: 60, ErrorKind.BACKEND_UNAVAILABLE: 30}


def est_error(exc: GatewayError, *,
              realm: str = "gatehouse EST") -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, extra headers and body for a domain error."""
    status = STATUS[exc.kind]
    headers: list[tuple[bytes, bytes]] = []
    if status == 401:
        headers.append((b"www-authenticate", f'Basic realm="{realm}", charset="UTF-8"'.encode()))
    retry = exc.retry_after or _DEFAULT_RETRY.get(exc.kind)
    if retry:
        headers.append((b"retry-after", str(retry).encode()))
    detail = client_detail(exc)
    if status >= 500 and detail == exc.detail:
        detail = "internal error"
    detail = " ".join(detail.split())
    return status, headers, (detail + "\n").encode()


def cmc_fail_info(kind: ErrorKind) -> CMCFailInfo:
    """The same error kinds inside a Full PKI Response (RFC 5272 §6.1.4)."""
    return CMC_FAIL_INFO[kind]


CMC_FAIL_INFO: dict[ErrorKind, CMCFailInfo] = {
    ErrorKind.MALFORMED: CMCFailInfo.BAD_REQUEST,
    ErrorKind.BAD_CSR: CMCFailInfo.POP_FAILED,
    ErrorKind.BAD_SIGNATURE: CMCFailInfo.BAD_MESSAGE_CHECK,
    ErrorKind.UNSUPPORTED_KEY: CMCFailInfo.BAD_ALG,
    ErrorKind.POLICY_DENIED: CMCFailInfo.BAD_REQUEST,
    ErrorKind.UNAUTHORIZED: CMCFailInfo.BAD_IDENTITY,
    ErrorKind.FORBIDDEN: CMCFailInfo.BAD_IDENTITY,
    ErrorKind.NOT_FOUND: CMCFailInfo.BAD_CERT_ID,
    ErrorKind.UNKNOWN_PROFILE: CMCFailInfo.BAD_REQUEST,
    ErrorKind.RATE_LIMITED: CMCFailInfo.TRY_LATER,
    ErrorKind.CONFLICT: CMCFailInfo.BAD_REQUEST,
    ErrorKind.PAYLOAD_TOO_LARGE: CMCFailInfo.BAD_REQUEST,
    ErrorKind.UNSUPPORTED: CMCFailInfo.BAD_REQUEST,
    ErrorKind.BACKEND_UNAVAILABLE: CMCFailInfo.TRY_LATER,
    ErrorKind.BACKEND_REJECTED: CMCFailInfo.INTERNAL_CA_ERROR,
    ErrorKind.INTERNAL: CMCFailInfo.INTERNAL_CA_ERROR,
}
