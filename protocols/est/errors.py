"""The mapping from the core's error kinds to EST answers (RFC 7030 §4.2.3, §3.2.3):
HTTP statuses for the simple operations (the core's ``EDGE_RULES``, shared with every
HTTP edge), CMCFailInfo inside Full PKI Responses.

EST has no error document: an HTTP status, a one-line ``text/plain`` reason and, where
it helps the client, ``Retry-After`` or ``WWW-Authenticate``.
"""

from __future__ import annotations

from gateway.errors import ErrorKind, GatewayError, client_detail, http_status, retry_after
from protocols.est.cmc import CMCFailInfo


def est_error(exc: GatewayError, *,
              realm: str = "gatehouse EST") -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, extra headers and body for a domain error."""
    status = http_status(exc.kind)
    headers: list[tuple[bytes, bytes]] = []
    if status == 401:
        headers.append((b"www-authenticate", f'Basic realm="{realm}", charset="UTF-8"'.encode()))
    retry = retry_after(exc)
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
