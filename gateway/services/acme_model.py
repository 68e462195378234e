"""ACME state values (RFC 8555 §7.1): the closed sets of states and the frozen objects the
ACME state port (``gateway.services.acme``) takes and returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class AccountStatus(StrEnum):
    """RFC 8555 §7.1.6, account objects."""

    VALID = "valid"
    DEACTIVATED = "deactivated"
    REVOKED = "revoked"


class OrderStatus(StrEnum):
    """RFC 8555 §7.1.6, order objects."""

    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class AuthorizationStatus(StrEnum):
    """RFC 8555 §7.1.6, authorization objects (``expired`` is computed when rendered)."""

    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ChallengeStatus(StrEnum):
    """RFC 8555 §7.1.6, challenge objects."""

    PENDING = "pending"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


# -- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    profile: str
    thumbprint: str  # RFC 7638 of the account key
    jwk: Mapping[str, Any]
    status: AccountStatus
    contact: tuple[str, ...]
    tos_agreed: bool
    eab_kid: str | None


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    account_id: str
    profile: str  # the Gatehouse profile issuing
    directory: str  # the directory profile the order came from
    status: OrderStatus
    identifiers: tuple[Mapping[str, str], ...]  # RFC 8555 identifier objects
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    expires: dt.datetime
    error: Mapping[str, Any] | None  # a problem document, stored as rendered
    replaces: str | None  # a CertID (RFC 9773 §5)
    request_id: str | None
    certificate_serial: str | None


@dataclass(frozen=True, slots=True)
class AuthorizationSummary:
    """What an order's state depends on (RFC 8555 §7.1.6)."""

    id: str
    status: AuthorizationStatus
    identifier_type: str
    identifier_value: str


@dataclass(frozen=True, slots=True)
class Authorization:
    id: str
    order_id: str
    account_id: str
    identifier_type: str
    identifier_value: str  # without the "*." of a wildcard
    wildcard: bool
    status: AuthorizationStatus
    expires: dt.datetime


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str
    authorization_id: str
    type: str
    token: str
    status: ChallengeStatus
    validated: dt.datetime | None
    error: Mapping[str, Any] | None
    attempts: int


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order and its authorizations, ordered by identifier value."""

    order: Order
    authorizations: tuple[AuthorizationSummary, ...]


@dataclass(frozen=True, slots=True)
class AuthorizationDetail:
    authorization: Authorization
    challenges: tuple[Challenge, ...]  # ordered by type


@dataclass(frozen=True, slots=True)
class ChallengeDetail:
    challenge: Challenge
    authorization: Authorization


@dataclass(frozen=True, slots=True)
class ValidationJob:
    """Everything one validation attempt needs, read under its lease."""

    challenge: Challenge
    authorization: Authorization
    order: Order
    account: Account


@dataclass(frozen=True, slots=True)
class OrderChange:
    """An order's new state (RFC 8555 §7.1.6) and the problem document that explains it."""

    status: OrderStatus
    error: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class NewAccount:
    profile: str
    thumbprint: str
    jwk: Mapping[str, Any]
    contact: tuple[str, ...]
    tos_agreed: bool


class AccountRefusal(StrEnum):
    KEY_IN_USE = "key-in-use"  # an account for this key was created concurrently
    EAB_KEY_USED = "eab-key-used"  # the EAB key was bound concurrently


@dataclass(frozen=True, slots=True)
class KeyInUse:
    """keyChange (RFC 8555 §7.3.5): the new key belongs to this account already."""

    holder_id: str


@dataclass(frozen=True, slots=True)
class NewAuthorization:
    identifier_type: str
    identifier_value: str  # without the "*." of a wildcard
    wildcard: bool
    challenge_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewOrder:
    account_id: str
    profile: str
    directory: str
    identifiers: tuple[Mapping[str, str], ...]
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    expires: dt.datetime
    authorization_expires: dt.datetime
    replaces: str | None
    authorizations: tuple[NewAuthorization, ...]


@dataclass(frozen=True, slots=True)
class OrderLimits:
    """Rate limits checked in the transaction that creates the order."""

    since: dt.datetime
    per_account: int
    per_identifier: int
    identifiers: tuple[str, ...]  # the values counted against ``per_identifier``


@dataclass(frozen=True, slots=True)
class LimitExceeded:
    identifier: str | None  # None: the account's limit


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """A validation's final outcome; recorded with its audit event."""

    challenge_id: str
    authorization_id: str
    account_id: str
    profile: str
    kind: str  # the challenge type
    identifier: str
    attempts: int
    error: Mapping[str, Any] | None  # None: valid
    reason: str


@dataclass(frozen=True, slots=True)
class AcmeCertificate:
    """An inventory certificate, as download, revokeCert and renewalInfo need it."""

    serial: str
    der: bytes
    chain: tuple[bytes, ...]  # issuer first
    profile: str
    protocol: str
    principal_id: str
    revoked: bool
    replaced_by_serial: str | None
    not_before: dt.datetime
    not_after: dt.datetime
