"""Domain errors: one exception type with a closed set of kinds.

``EDGE_RULES`` is the one table of what each kind means at an HTTP edge: its status
(RFC 9110 §15), the generic text that replaces a detail a client must not see, and the
default Retry-After.  The EST, admin API, console and generic (app) edges take their status
from it; SCEP failInfo and ACME problem types are protocol vocabulary, mapped once each
under ``protocols/``.  ``tests/unit/test_error_edges.py`` checks every kind on every edge.
``detail`` is safe to show a client unless ``client_detail`` withholds it; the cause is
chained with ``raise ... from`` and only ever logged.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

log = logging.getLogger("gatehouse.errors")


class ErrorKind(StrEnum):
    MALFORMED = "malformed"  # the input cannot be parsed (bad base64, DER, PEM, JSON)
    BAD_CSR = "bad-csr"  # parsed, but the CSR is invalid (signature, structure)
    BAD_SIGNATURE = "bad-signature"  # a signed protocol message does not verify
    UNSUPPORTED_KEY = "unsupported-key"  # key type or size refused by policy
    POLICY_DENIED = "policy-denied"  # names, usage or validity refused by policy
    UNAUTHORIZED = "unauthorized"  # no or wrong credentials
    FORBIDDEN = "forbidden"  # authenticated, but not allowed to do this
    NOT_FOUND = "not-found"  # unknown request, certificate, profile path, ...
    UNKNOWN_PROFILE = "unknown-profile"
    RATE_LIMITED = "rate-limited"
    CONFLICT = "conflict"  # state does not allow the operation (e.g. already revoked)
    PAYLOAD_TOO_LARGE = "payload-too-large"
    UNSUPPORTED = "unsupported"  # the operation is not possible with this backend
    BACKEND_UNAVAILABLE = "backend-unavailable"  # transient: retry later
    BACKEND_REJECTED = "backend-rejected"  # the CA refused the request for good
    INTERNAL = "internal"


class GatewayError(Exception):
    """An error with a kind and a client-safe detail."""

    def __init__(
        self, kind: ErrorKind, detail: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after


def malformed(detail: str) -> GatewayError:
    return GatewayError(ErrorKind.MALFORMED, detail)


def denied(detail: str) -> GatewayError:
    return GatewayError(ErrorKind.POLICY_DENIED, detail)


@dataclass(frozen=True, slots=True)
class EdgeRule:
    """What one error kind is at an HTTP edge."""

    status: int  # RFC 9110 §15
    # Set for kinds whose detail can name backend URLs, hosts or internal state (issue 10,
    # rule 10): clients get this text and a reference, the detail goes to the log.
    generic_detail: str | None = None
    retry_after: int | None = None  # default Retry-After (seconds) when the error has none


EDGE_RULES: Mapping[ErrorKind, EdgeRule] = MappingProxyType({
    ErrorKind.MALFORMED: EdgeRule(400),
    ErrorKind.BAD_CSR: EdgeRule(400),
    ErrorKind.BAD_SIGNATURE: EdgeRule(400),
    # A key the profile does not allow is a policy refusal, like any other.
    ErrorKind.UNSUPPORTED_KEY: EdgeRule(403),
    ErrorKind.POLICY_DENIED: EdgeRule(403),
    ErrorKind.UNAUTHORIZED: EdgeRule(401),
    ErrorKind.FORBIDDEN: EdgeRule(403),
    ErrorKind.NOT_FOUND: EdgeRule(404),
    ErrorKind.UNKNOWN_PROFILE: EdgeRule(404),
    ErrorKind.RATE_LIMITED: EdgeRule(429, retry_after=60),
    ErrorKind.CONFLICT: EdgeRule(409),
    ErrorKind.PAYLOAD_TOO_LARGE: EdgeRule(413),
    # The request is fine; this gateway/backend cannot do the operation (RFC 9110 §15.6.2).
    ErrorKind.UNSUPPORTED: EdgeRule(501),
    ErrorKind.BACKEND_UNAVAILABLE: EdgeRule(
        503, "the CA is temporarily unavailable; retry later", retry_after=30),
    # The CA refused for good: retrying the same request cannot help.
    ErrorKind.BACKEND_REJECTED: EdgeRule(403),
    ErrorKind.INTERNAL: EdgeRule(500, "internal error"),
})


def http_status(kind: ErrorKind) -> int:
    """The HTTP status of ``kind`` at the EST, admin API, console and generic edges."""
    return EDGE_RULES[kind].status


def retry_after(error: GatewayError) -> int | None:
    """The Retry-After an edge sends with ``error``: its own, else the kind's default."""
    return error.retry_after or EDGE_RULES[error.kind].retry_after


# A CA's own refusal text (Vault role and mount names, ADCS template names, policy-module
# codes, configuration hints) follows this prefix in a failed request's reason: operators
# see it (CLI, admin API, audit); clients get the prefix's sentence and a reference.
CA_REFUSAL_PREFIX = "the CA refused the request: "


def ca_refusal(detail: str) -> str:
    """The stored reason of a request the CA refused; ``client_detail`` withholds
    ``detail`` from clients."""
    return CA_REFUSAL_PREFIX + detail


def client_detail(error: GatewayError) -> str:
    """The detail an edge may send a client for ``error``.

    INTERNAL and BACKEND_UNAVAILABLE details, and the CA's own text in a refusal, stay in
    the log, under a random reference that the client gets with a generic reason (so an
    operator can find the line); every other detail is client-safe by contract and
    returned as is.
    """
    generic = EDGE_RULES[error.kind].generic_detail
    if generic is None and error.kind is ErrorKind.BACKEND_REJECTED \
            and error.detail.startswith(CA_REFUSAL_PREFIX):
        generic = "the CA refused the request"
    if generic is None:
        return error.detail
    reference = secrets.token_hex(6)
    log.warning("error detail withheld from the client",
                extra={"kind": error.kind.value, "reference": reference, "error": error.detail})
    return f"{generic} (reference {reference})"


class ConfigError(Exception):
    """The configuration file is invalid; raised before anything starts."""
