"""Problem documents (RFC 7807, RFC 8555 §6.7): the ACME edge of every error.

``AcmeProblem`` is the exception handlers raise; ``from_gateway_error`` is the one mapping
of the core's error kinds to ACME problem types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.errors import ErrorKind, GatewayError, client_detail


class ProblemType(StrEnum):
    """RFC 8555 §6.7 error types (plus the profiles draft's invalidProfile)."""

    ACCOUNT_DOES_NOT_EXIST = "accountDoesNotExist"
    ALREADY_REVOKED = "alreadyRevoked"
    BAD_CSR = "badCSR"
    BAD_NONCE = "badNonce"
    BAD_PUBLIC_KEY = "badPublicKey"
    BAD_REVOCATION_REASON = "badRevocationReason"
    BAD_SIGNATURE_ALGORITHM = "badSignatureAlgorithm"
    CAA = "caa"
    COMPOUND = "compound"
    CONNECTION = "connection"
    DNS = "dns"
    EXTERNAL_ACCOUNT_REQUIRED = "externalAccountRequired"
    INCORRECT_RESPONSE = "incorrectResponse"
    INVALID_CONTACT = "invalidContact"
    MALFORMED = "malformed"
    ORDER_NOT_READY = "orderNotReady"
    RATE_LIMITED = "rateLimited"
    REJECTED_IDENTIFIER = "rejectedIdentifier"
    SERVER_INTERNAL = "serverInternal"
    TLS = "tls"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_CONTACT = "unsupportedContact"
    UNSUPPORTED_IDENTIFIER = "unsupportedIdentifier"
    USER_ACTION_REQUIRED = "userActionRequired"
    INVALID_PROFILE = "invalidProfile"
    ALREADY_REPLACED = "alreadyReplaced"

    @property
    def urn(self) -> str:
        return f"urn:ietf:params:acme:error:{self.value}"


@dataclass(frozen=True, slots=True)
class Subproblem:
    """RFC 8555 §6.7.1: an error about one identifier."""

    type: ProblemType
    detail: str
    identifier: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type.urn, "detail": self.detail, "identifier": self.identifier}


@dataclass
class AcmeProblem(Exception):
    """Raised by handlers; rendered as application/problem+json."""

    type: ProblemType
    detail: str
    status: int = 400
    subproblems: Sequence[Subproblem] = ()
    retry_after: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, f"{self.type}: {self.detail}")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type.urn, "detail": self.detail,
                                "status": self.status, **self.extra}
        if self.subproblems:
            body["subproblems"] = [s.to_json() for s in self.subproblems]
        return body


def malformed(detail: str, status: int = 400) -> AcmeProblem:
    return AcmeProblem(ProblemType.MALFORMED, detail, status)


def unauthorized(detail: str) -> AcmeProblem:
    return AcmeProblem(ProblemType.UNAUTHORIZED, detail, 403)


def not_found(what: str) -> AcmeProblem:
    return AcmeProblem(ProblemType.MALFORMED, f"no such {what}", 404)


_KIND_MAP: dict[ErrorKind, tuple[ProblemType, int]] = {
    ErrorKind.MALFORMED: (ProblemType.MALFORMED, 400),
    ErrorKind.BAD_CSR: (ProblemType.BAD_CSR, 400),
    ErrorKind.BAD_SIGNATURE: (ProblemType.MALFORMED, 400),
    ErrorKind.UNSUPPORTED_KEY: (ProblemType.BAD_CSR, 400),
    ErrorKind.POLICY_DENIED: (ProblemType.REJECTED_IDENTIFIER, 400),
    ErrorKind.UNAUTHORIZED: (ProblemType.UNAUTHORIZED, 403),
    ErrorKind.FORBIDDEN: (ProblemType.UNAUTHORIZED, 403),
    ErrorKind.NOT_FOUND: (ProblemType.MALFORMED, 404),
    ErrorKind.UNKNOWN_PROFILE: (ProblemType.INVALID_PROFILE, 400),
    ErrorKind.RATE_LIMITED: (ProblemType.RATE_LIMITED, 429),
    ErrorKind.CONFLICT: (ProblemType.MALFORMED, 409),
    ErrorKind.PAYLOAD_TOO_LARGE: (ProblemType.MALFORMED, 413),
    ErrorKind.UNSUPPORTED: (ProblemType.MALFORMED, 400),
    ErrorKind.BACKEND_UNAVAILABLE: (ProblemType.SERVER_INTERNAL, 503),
    ErrorKind.BACKEND_REJECTED: (ProblemType.SERVER_INTERNAL, 502),
    ErrorKind.INTERNAL: (ProblemType.SERVER_INTERNAL, 500),
}


def from_gateway_error(error: GatewayError) -> AcmeProblem:
    """The one mapping of core error kinds to ACME problem types and HTTP statuses."""
    problem_type, status = _KIND_MAP[error.kind]
    retry_after = error.retry_after
    if error.kind is ErrorKind.RATE_LIMITED and retry_after is None:
        retry_after = 60
    if error.kind is ErrorKind.BACKEND_UNAVAILABLE and retry_after is None:
        retry_after = 30
    return AcmeProblem(problem_type, client_detail(error), status, retry_after=retry_after)


def kinds_covered() -> set[ErrorKind]:
    return set(_KIND_MAP)
