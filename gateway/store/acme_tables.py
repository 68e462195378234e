"""ACME state (RFC 8555 §7.1): nonces, accounts, orders, authorizations, challenges.

Everything an ACME exchange needs between two requests lives here, so any worker or
instance sharing the database can answer any request and run any validation.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.base import Base, UtcDateTime


class AcmeNonceRow(Base):
    """An unused Replay-Nonce (RFC 8555 §6.5); deleted when used or expired."""

    __tablename__ = "acme_nonces"

    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class AcmeAccountRow(Base):
    """An ACME account (RFC 8555 §7.1.2), one per key and directory profile."""

    __tablename__ = "acme_accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    profile: Mapped[str] = mapped_column(String(64))
    thumbprint: Mapped[str] = mapped_column(String(64))  # RFC 7638, base64url SHA-256
    jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # valid | deactivated | revoked
    contact: Mapped[list[str]] = mapped_column(JSON, default=list)
    tos_agreed: Mapped[bool] = mapped_column(default=False)
    eab_kid: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("profile", "thumbprint"),)


class AcmeOrderRow(Base):
    """An order (RFC 8555 §7.1.3); ``request_id`` links it to the enrollment pipeline."""

    __tablename__ = "acme_orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("acme_accounts.id"), index=True)
    profile: Mapped[str] = mapped_column(String(64))  # the Gatehouse profile issuing
    directory: Mapped[str] = mapped_column(String(64))  # the directory profile it came from
    status: Mapped[str] = mapped_column(String(16))
    identifiers: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    not_before: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    not_after: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    expires: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    replaces: Mapped[str | None] = mapped_column(String(255))  # CertID (RFC 9773 §5)
    request_id: Mapped[str | None] = mapped_column(String(36))
    certificate_serial: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_acme_orders_account_id_created_at", "account_id", "created_at"),)


class AcmeAuthorizationRow(Base):
    """An authorization (RFC 8555 §7.1.4) of one identifier for one order."""

    __tablename__ = "acme_authorizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("acme_orders.id"), index=True)
    account_id: Mapped[str] = mapped_column(String(36))
    identifier_type: Mapped[str] = mapped_column(String(8))
    identifier_value: Mapped[str] = mapped_column(String(255))
    wildcard: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16))
    expires: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_acme_authorizations_identifier_value_created_at", "identifier_value",
              "created_at"),
    )


class AcmeChallengeRow(Base):
    """A challenge (RFC 8555 §8); validation state is leased so one worker runs it."""

    __tablename__ = "acme_challenges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    authorization_id: Mapped[str] = mapped_column(ForeignKey("acme_authorizations.id"),
                                                  index=True)
    type: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    validated: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_acme_challenges_status_next_attempt_at", "status",
                            "next_attempt_at"),)
