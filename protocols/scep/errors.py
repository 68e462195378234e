"""The one mapping from the core's error kinds to SCEP's wire format (RFC 8894 §3.3.2)."""

from __future__ import annotations

from gateway.errors import ErrorKind
from protocols.scep.vocabulary import FailInfo

# None: transient; the client is answered PENDING and polls again.
_FAIL_INFO: dict[ErrorKind, FailInfo | None] = {
    ErrorKind.MALFORMED: FailInfo.BAD_REQUEST,
    ErrorKind.BAD_CSR: FailInfo.BAD_REQUEST,
    ErrorKind.BAD_SIGNATURE: FailInfo.BAD_MESSAGE_CHECK,
    ErrorKind.UNSUPPORTED_KEY: FailInfo.BAD_ALG,
    ErrorKind.POLICY_DENIED: FailInfo.BAD_REQUEST,
    ErrorKind.UNAUTHORIZED: FailInfo.BAD_REQUEST,
    ErrorKind.FORBIDDEN: FailInfo.BAD_REQUEST,
    ErrorKind.NOT_FOUND: FailInfo.BAD_CERT_ID,
    ErrorKind.UNKNOWN_PROFILE: FailInfo.BAD_REQUEST,
    ErrorKind.RATE_LIMITED: FailInfo.BAD_REQUEST,
    ErrorKind.CONFLICT: FailInfo.BAD_REQUEST,
    ErrorKind.PAYLOAD_TOO_LARGE: FailInfo.BAD_REQUEST,
    ErrorKind.UNSUPPORTED: FailInfo.BAD_REQUEST,
    ErrorKind.BACKEND_UNAVAILABLE: None,
    ErrorKind.BACKEND_REJECTED: FailInfo.BAD_REQUEST,
    ErrorKind.INTERNAL: FailInfo.BAD_REQUEST,
}


def fail_info_for(kind: ErrorKind) -> FailInfo | None:
    """The failInfo a CertRep FAILURE carries for ``kind``; None means answer PENDING."""
    return _FAIL_INFO[kind]


class ScepFailure(Exception):
    """Answer the request with CertRep FAILURE ``fail_info``; ``detail`` goes in failInfoText."""

    def __init__(self, fail_info: FailInfo, detail: str) -> None:
        super().__init__(detail)
        self.fail_info = fail_info
        self.detail = detail


class Unreadable(Exception):
    """The message cannot be read far enough to answer with a CertRep: HTTP 400."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
