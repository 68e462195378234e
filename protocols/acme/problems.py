"""Problem documents (RFC 7807, RFC 8555 §6.7): the ACME edge of every error.

``AcmeProblem`` is the exception handlers raise; ``from_gateway_error`` is the one mapping
of the core's error kinds to ACME problem types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.errors import ErrorKind, GatewayError, client_detail, http_status, retry_after


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


PROBLEM_TYPE: dict[ErrorKind, ProblemType] = {
    ErrorKind.MALFORMED: ProblemType.MALFORMED,
    ErrorKind.BAD_CSR: ProblemType.BAD_CSR,
    ErrorKind.BAD_SIGNATURE: ProblemType.MALFORMED,
    ErrorKind.UNSUPPORTED_KEY: ProblemType.BAD_CSR,
    ErrorKind.POLICY_DENIED: ProblemType.REJECTED_IDENTIFIER,
    ErrorKind.UNAUTHORIZED: ProblemType.UNAUTHORIZED,
    ErrorKind.FORBIDDEN: ProblemType.UNAUTHORIZED,
    ErrorKind.NOT_FOUND: ProblemType.MALFORMED,
    ErrorKind.UNKNOWN_PROFILE: ProblemType.INVALID_PROFILE,
    ErrorKind.RATE_LIMITED: ProblemType.RATE_LIMITED,
    ErrorKind.CONFLICT: ProblemType.MALFORMED,
    ErrorKind.PAYLOAD_TOO_LARGE: ProblemType.MALFORMED,
    # Nothing was wrong with the request: RFC 8555 has no "not implemented" type.
    ErrorKind.UNSUPPORTED: ProblemType.SERVER_INTERNAL,
    ErrorKind.BACKEND_UNAVAILABLE: ProblemType.SERVER_INTERNAL,
    ErrorKind.BACKEND_REJECTED: ProblemType.SERVER_INTERNAL,
    ErrorKind.INTERNAL: ProblemType.SERVER_INTERNAL,
}

# The problem's status is the core's (``gateway.errors.EDGE_RULES``) except where ACME
# practice ties another status to the problem type.
ACME_STATUS: dict[ErrorKind, int] = {
    ErrorKind.UNSUPPORTED_KEY: 400,  # badCSR (RFC 8555 §7.4)
    ErrorKind.POLICY_DENIED: 400,  # rejectedIdentifier, as Boulder and Pebble answer it
    # ACME has no HTTP authentication challenge to go with a 401 (RFC 9110 §15.5.2).
    ErrorKind.UNAUTHORIZED: 403,
    ErrorKind.UNKNOWN_PROFILE: 400,  # invalidProfile (draft-ietf-acme-profiles)
    # No RFC 8555 type says "the CA refused": serverInternal, and a 5xx to go with it.
    ErrorKind.BACKEND_REJECTED: 502,
}


def from_gateway_error(error: GatewayError) -> AcmeProblem:
    """The one mapping of core error kinds to ACME problem types and HTTP statuses."""
    status = ACME_STATUS.get(error.kind) or http_status(error.kind)
    return AcmeProblem(PROBLEM_TYPE[error.kind], client_detail(error), status,
                       retry_after=retry_after(error))


def kinds_covered() -> set[ErrorKind]:
    return set(PROBLEM_TYPE)
