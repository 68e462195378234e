"""Domain errors: one exception type with a closed set of kinds.

Adapters map an ``ErrorKind`` to their wire format in exactly one place each
(EST HTTP status, SCEP failInfo, ACME problem type).  ``detail`` is safe to show a
client; the cause is chained with ``raise ... from`` and only ever logged.
"""

from __future__ import annotations

import logging
import secrets
from enum import StrEnum

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


# Kinds whose detail can name backend URLs, hosts or internal state (issue 10, rule 10).
_GENERIC_DETAIL: dict[ErrorKind, str] = {
    ErrorKind.BACKEND_UNAVAILABLE: "the CA is temporarily unavailable; retry later",
    ErrorKind.INTERNAL: "internal error",
}


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
    generic = _GENERIC_DETAIL.get(error.kind)
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
