"""SQLAlchemy 2 tables: the one schema every protocol and backend shares.

Alembic migrations in ``migrations/`` create this schema; tests build their databases by
running those migrations.  The rows of the core register into ``gateway.store.base.Base``
like the ACME and console-session tables do; ``gateway.store.schema`` gathers them all.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.base import Base, UtcDateTime


class RequestRow(Base):
    """One enrollment request through its whole life (model.RequestState)."""

    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    protocol: Mapped[str] = mapped_column(String(16))
    operation: Mapped[str] = mapped_column(String(16))
    profile: Mapped[str] = mapped_column(String(64), index=True)
    transaction_id: Mapped[str | None] = mapped_column(String(128))
    principal_kind: Mapped[str] = mapped_column(String(32))
    principal_id: Mapped[str] = mapped_column(String(255))
    principal_attributes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    csr_der: Mapped[bytes] = mapped_column(LargeBinary)
    # The original CSR's signature verified when it was received; csr_der may have had
    # its challengePassword removed since (gateway.csr_redaction; docs/security.md rule 8).
    csr_verified_at_receipt: Mapped[bool] = mapped_column(default=False)
    subject: Mapped[str] = mapped_column(Text, default="")
    sans: Mapped[list[str]] = mapped_column(JSON, default=list)
    proven_identifiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    renewal_of: Mapped[str | None] = mapped_column(String(64))
    requested_not_before: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    requested_not_after: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    backend: Mapped[str | None] = mapped_column(String(64))
    backend_ref: Mapped[str | None] = mapped_column(String(255))
    certificate_serial: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("protocol", "transaction_id"),
        Index("ix_requests_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_requests_principal_id_created_at", "principal_id", "created_at"),
    )


class CertificateRow(Base):
    """The one inventory of certificates, whatever protocol or backend made them."""

    __tablename__ = "certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)  # lower-case hex
    issuer: Mapped[str] = mapped_column(Text)
    issuer_id: Mapped[str | None] = mapped_column(String(64))  # internal CA generation
    subject: Mapped[str] = mapped_column(Text, index=True)
    common_name: Mapped[str] = mapped_column(String(255), default="", index=True)
    sans: Mapped[list[str]] = mapped_column(JSON, default=list)
    san_text: Mapped[str] = mapped_column(Text, default="")  # "|dns:a|ip:1.2.3.4|" search
    profile: Mapped[str] = mapped_column(String(64), index=True)
    protocol: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(64), index=True)
    backend_ref: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(ForeignKey("requests.id"))
    principal_id: Mapped[str] = mapped_column(String(255), default="")
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    chain_der: Mapped[bytes] = mapped_column(LargeBinary)  # concatenated DER, issuer first
    status: Mapped[str] = mapped_column(String(16), index=True)  # valid | revoked
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    replaces_serial: Mapped[str | None] = mapped_column(String(64), index=True)
    replaced_by_serial: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class RevocationRow(Base):
    """Every revocation request, including those a backend could not carry out."""

    __tablename__ = "revocations"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    serial: Mapped[str] = mapped_column(ForeignKey("certificates.serial"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(24))  # done | needs-operator
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class CredentialRow(Base):
    """Secrets that let a principal in; only hashes are stored."""

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # password | scep-challenge | eab | api-token
    profile: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    secret_hash: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    uses_left: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("kind", "profile", "name"),)


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(36), index=True)
    serial: Mapped[str | None] = mapped_column(String(64), index=True)
    profile: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CrlRow(Base):
    """CRLs the gateway signed for backends it holds keys of; shared by all instances."""

    __tablename__ = "crls"

    backend: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    stale: Mapped[bool] = mapped_column(default=False)  # a revocation happened since
# Core Table objects for hot-path statements (no ORM unit of work).
requests_table: Table = RequestRow.__table__  # type: ignore[assignment]
certificates_table: Table = CertificateRow.__table__  # type: ignore[assignment]
audit_events_table: Table = AuditEventRow.__table__  # type: ignore[assignment]
