"""Repository functions for credentials (only hashes are stored)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.store.tables import CredentialRow


def add(session: Session, *, kind: str, profile: str | None, name: str, secret_hash: str,
        now: dt.datetime, attributes: dict[str, Any] | None = None, uses_left: int | None = None,
        expires_at: dt.datetime | None = None) -> CredentialRow:
    row = CredentialRow(id=str(uuid.uuid4()), kind=kind, profile=profile, name=name,
                        secret_hash=secret_hash, attributes=attributes or {},
                        uses_left=uses_left, expires_at=expires_at, disabled=False,
                        created_at=now)
    session.add(row)
    session.flush()
    return row


def find(session: Session, *, kind: str, profile: str | None, name: str) -> CredentialRow | None:
    query = select(CredentialRow).where(CredentialRow.kind == kind, CredentialRow.name == name)
    query = query.where(CredentialRow.profile.is_(None) if profile is None
                        else CredentialRow.profile == profile)
    return session.scalars(query).first()


def list_kind(session: Session, *, kind: str, profile: str | None = None) -> list[CredentialRow]:
    query = select(CredentialRow).where(CredentialRow.kind == kind)
    if profile is not None:
        query = query.where(CredentialRow.profile == profile)
    return list(session.scalars(query.order_by(CredentialRow.created_at)))


def consume_use(session: Session, credential_id: str) -> bool:
    """Take one use of a limited credential atomically; False when none is left."""
    result = session.execute(
        update(CredentialRow)
        .where(CredentialRow.id == credential_id, CredentialRow.uses_left > 0)
        .values(uses_left=CredentialRow.uses_left - 1)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
