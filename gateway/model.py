"""The internal enrollment model: plain, typed, immutable values.

Every protocol adapter turns its wire format into an ``EnrollmentRequest``; the policy
engine answers with a ``Decision``; a CA backend answers with an ``IssuedCertificate`` or
``Pending``.  No ORM object and no protocol object crosses these boundaries.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from cryptography import x509


class Protocol(StrEnum):
    EST = "est"
    SCEP = "scep"
    ACME = "acme"
    MANUAL = "manual"  # CLI and admin API enrollment


class Operation(StrEnum):
    ENROLL = "enroll"
    RENEW = "renew"  # same key, new certificate
    REKEY = "rekey"  # new key, replaces a certificate
    SERVER_KEYGEN = "server-keygen"


class PrincipalKind(StrEnum):
    PASSWORD = "password"  # noqa: S105 - an auth method name, not a secret
    CLIENT_CERT = "client-cert"
    SCEP_CHALLENGE = "scep-challenge"
    ACME_ACCOUNT = "acme-account"
    ADMIN = "admin"


class IdentifierType(StrEnum):
    DNS = "dns"
    IP = "ip"
    EMAIL = "email"
    URI = "uri"


class RequestState(StrEnum):
    """The request state machine, stored in the database.

    received ──► held ──► (approved) ──► submitted ──► issued
        │          └────► denied           │  ▲
        └──► denied                        ▼  │ poll / retry
                                         pending, failed (retryable until attempts run out)
    """

    RECEIVED = "received"  # persisted, not yet decided
    HELD = "held"  # waiting for an operator's approval
    SUBMITTED = "submitted"  # approved; the backend is being (or must be) asked
    PENDING = "pending"  # the backend answered "pending" (ADCS manager approval, queue)
    ISSUED = "issued"
    DENIED = "denied"
    FAILED = "failed"  # gave up: the backend rejected it or retries ran out

    @property
    def final(self) -> bool:
        return self in (RequestState.ISSUED, RequestState.DENIED, RequestState.FAILED)


class Outcome(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    HELD = "held"


class RevocationReason(StrEnum):
    """RFC 5280 §5.3.1 CRLReason names (value 7 is unused in the RFC)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    REMOVE_FROM_CRL = "removeFromCRL"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise"

    @property
    def code(self) -> int:
        return _REASON_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> RevocationReason:
        for reason, value in _REASON_CODES.items():
            if value == code:
                return reason
        raise ValueError(f"unknown CRLReason code {code}")


_REASON_CODES = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 6,
    RevocationReason.REMOVE_FROM_CRL: 8,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
    RevocationReason.AA_COMPROMISE: 10,
}


def _frozen_map(values: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks, and how they proved it."""

    kind: PrincipalKind
    id: str
    attributes: Mapping[str, str] = field(default_factory=_frozen_map)


@dataclass(frozen=True, slots=True, order=True)
class Identifier:
    """A subject alternative name value, typed (RFC 8555 §9.7.7 style)."""

    type: IdentifierType
    value: str

    def __post_init__(self) -> None:
        if self.type is IdentifierType.IP:
            # Canonical text form, so '::1' and '0::1' compare equal.
            object.__setattr__(self, "value", str(ipaddress.ip_address(self.value)))
        elif self.type in (IdentifierType.DNS, IdentifierType.EMAIL):
            object.__setattr__(self, "value", self.value.lower())

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


def san_identifiers(names: x509.SubjectAlternativeName) -> list[Identifier]:
    """DNS, IP address, e-mail and URI names of a SAN extension (RFC 5280 §4.2.1.6) as
    identifiers; other name types and IP networks (a name-constraints form) are skipped.

    The one SAN reader of the core and the backends: whoever must refuse what it skips
    (the policy, the post-issuance check) looks for those names itself.
    """
    out: list[Identifier] = []
    for name in names:
        if isinstance(name, x509.DNSName):
            out.append(Identifier(IdentifierType.DNS, name.value))
        elif isinstance(name, x509.IPAddress) and isinstance(
                name.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            out.append(Identifier(IdentifierType.IP, str(name.value)))
        elif isinstance(name, x509.RFC822Name):
            out.append(Identifier(IdentifierType.EMAIL, name.value))
        elif isinstance(name, x509.UniformResourceIdentifier):
            out.append(Identifier(IdentifierType.URI, name.value))
    return out


@dataclass(frozen=True, slots=True)
class EnrollmentRequest:
    """A protocol-neutral certificate request, built by an adapter."""

    protocol: Protocol
    operation: Operation
    profile: str
    csr: x509.CertificateSigningRequest
    csr_der: bytes
    principal: Principal
    proven_identifiers: tuple[Identifier, ...] = ()
    renewal_of: str | None = None  # serial (lower-case hex) of the certificate replaced
    requested_not_before: dt.datetime | None = None
    requested_not_after: dt.datetime | None = None
    transaction_id: str | None = None  # protocol-level id; makes submission idempotent
    # Rebuilt from a row whose CSR had its challengePassword removed (gateway.csr_redaction):
    # the original's signature verified at receipt; ``csr`` itself no longer verifies.
    csr_verified_at_receipt: bool = False

    @property
    def csr_signature_ok(self) -> bool:
        """Proof of possession: the CSR's signature verifies, or did when received."""
        return self.csr_verified_at_receipt or self.csr.is_signature_valid


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy engine decided, and exactly what to issue if approved."""

    outcome: Outcome
    reason: str
    profile: str
    backend: str = ""
    fallback_backend: str | None = None
    template: str | None = None  # backend role (Vault) or certificate template (ADCS)
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    subject: x509.Name = field(default_factory=lambda: x509.Name([]))
    sans: tuple[Identifier, ...] = ()
    key_usage: frozenset[str] = frozenset()  # names as in cryptography's KeyUsage
    extended_key_usage: tuple[str, ...] = ()  # dotted OIDs

    @property
    def approved(self) -> bool:
        return self.outcome is Outcome.APPROVED


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate a backend signed, in one shape whatever the backend."""

    serial: str  # lower-case hex, no separators
    issuer: str  # RFC 4514 string
    subject: str
    sans: tuple[Identifier, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    der: bytes
    chain: tuple[bytes, ...]  # DER, issuer first, up to (not always including) the root
    backend: str
    backend_ref: str | None = None

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)


@dataclass(frozen=True, slots=True)
class Pending:
    """The backend accepted the request but has not issued yet."""

    backend_ref: str
    retry_after: int = 60  # seconds


@dataclass(frozen=True, slots=True)
class EnrollmentResult:
    """What the pipeline answers an adapter, whatever happened."""

    request_id: str
    state: RequestState
    certificate: IssuedCertificate | None = None
    reason: str = ""
    retry_after: int | None = None
    # The CA was unavailable and the pipeline retries at ``retry_after``: EST and ACME
    # answer 503-style "try later", SCEP PENDING (docs/security.md, rule 10).
    retrying: bool = False
