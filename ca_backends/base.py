"""The CA backend interface: one small async Protocol every backend implements.

A backend signs what the policy engine decided; it never sees a protocol object and never
touches the gateway's database.  Backends register by config ``type`` name, so an unknown
type stops start-up (``gateway.config`` validates against this registry).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cryptography import x509
from pydantic import BaseModel, ConfigDict

from gateway.errors import ErrorKind, GatewayError
from gateway.model import (
    Decision,
    EnrollmentRequest,
    IssuedCertificate,
    Pending,
    RevocationReason,
)


class Unsupported(GatewayError):
    """The backend cannot do this at all (e.g. revocation through ADCS web enrollment)."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.UNSUPPORTED, detail)


class BackendUnavailable(GatewayError):
    """A transient failure: the request stays retryable."""

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(ErrorKind.BACKEND_UNAVAILABLE, detail, retry_after=retry_after)


class BackendRejected(GatewayError):
    """The CA refused the request for good; ``detail`` carries the CA's reason."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.BACKEND_REJECTED, detail)


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""


class BackendConfig(BaseModel):
    """Base of every backend's config model; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str


@runtime_checkable
class CaBackend(Protocol):
    """What the gateway needs from any CA."""

    name: str

    async def issue(
        self, request: EnrollmentRequest, decision: Decision
    ) -> IssuedCertificate | Pending:
        """Sign per ``decision``; raise BackendUnavailable (retry) or BackendRejected."""

    async def poll(self, backend_ref: str) -> IssuedCertificate | Pending:
        """Ask again about a request the backend answered ``Pending`` to."""

    async def revoke(self, serial: str, reason: RevocationReason) -> None:
        """Revoke at the CA; raise Unsupported where the CA cannot."""

    async def ca_chain(self) -> list[x509.Certificate]:
        """The current issuing chain, issuing CA first, root last."""

    async def crl(self) -> bytes | None:
        """The CA's current CRL (DER) where the CA publishes one."""

    async def health(self) -> Health: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class IssuerInfo:
    """One signing CA of a backend that lets the gateway sign CRLs and OCSP answers."""

    id: str  # stable, URL-safe (e.g. "1", "2" for successive issuing CAs)
    certificate: x509.Certificate
    active_from: dt.datetime


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    serial: str
    revoked_at: dt.datetime
    reason: RevocationReason


@runtime_checkable
class RevocationSigner(Protocol):
    """Optional ability: backends whose keys the gateway holds (the internal CA).

    The gateway keeps revocation state in its database and asks the backend to sign
    CRLs (RFC 5280 §5) and OCSP responses (RFC 6960) for it.
    """

    def issuers(self) -> list[IssuerInfo]: ...

    def issuer_for(self, certificate: x509.Certificate) -> IssuerInfo | None: ...

    def issuer_for_request(self, ocsp_request_der: bytes) -> IssuerInfo | None:
        """The issuer an OCSP request's CertID names, or None (unknown or malformed)."""

    def sign_crl(
        self,
        issuer_id: str,
        revoked: list[RevokedEntry],
        number: int,
        this_update: dt.datetime,
        next_update: dt.datetime,
    ) -> bytes: ...

    def sign_ocsp(
        self,
        issuer_id: str,
        request_der: bytes,
        status_of: Callable[[str], tuple[str, RevokedEntry | None]],
        this_update: dt.datetime,
        next_update: dt.datetime,
    ) -> bytes: ...


@runtime_checkable
class Rollover(Protocol):
    """Optional ability: a successor issuing CA announced ahead of the switch."""

    def next_ca_chain(self) -> list[x509.Certificate] | None: ...


BackendFactory = Callable[[str, Any, "BackendContext"], CaBackend]


@dataclass(frozen=True, slots=True)
class BackendContext:
    """What a backend may know of its surroundings when it is built."""

    data_dir: str
    public_http_url: str  # base for CRL / OCSP / CA issuer URLs in issued certificates
    clock: Any

