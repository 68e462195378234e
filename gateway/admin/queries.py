"""Read-only queries the admin API and console need beyond the core repositories."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.store.certificates import CertificateStatus
from gateway.store.tables import AuditEventRow, CertificateRow, CredentialRow


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None  # exact, or a prefix ending in '.' ("request.")
    outcome: str | None = None
    request_id: str | None = None
    serial: str | None = None
    profile: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = 100
    offset: int = 0


def audit_events(session: Session, where: AuditFilter) -> list[AuditEventRow]:
    query = select(AuditEventRow).order_by(AuditEventRow.id.desc())
    if where.actor:
        query = query.where(AuditEventRow.actor == where.actor)
    if where.action:
        if where.action.endswith("."):
            query = query.where(AuditEventRow.action.startswith(where.action, autoescape=True))
        else:
            query = query.where(AuditEventRow.action == where.action)
    if where.outcome:
        query = query.where(AuditEventRow.outcome == where.outcome)
    if where.request_id:
        query = query.where(AuditEventRow.request_id == where.request_id)
    if where.serial:
        query = query.where(AuditEventRow.serial == where.serial)
    if where.profile:
        query = query.where(AuditEventRow.profile == where.profile)
    if where.since:
        query = query.where(AuditEventRow.at >= where.since)
    if where.until:
        query = query.where(AuditEventRow.at < where.until)
    return list(session.scalars(query.limit(where.limit).offset(where.offset)))


def credentials_of(session: Session, kind: str, profile: str | None = None,
                   limit: int = 500) -> list[CredentialRow]:
    query = select(CredentialRow).where(CredentialRow.kind == kind)
    if profile:
        query = query.where(CredentialRow.profile == profile)
    return list(session.scalars(query.order_by(CredentialRow.created_at.desc()).limit(limit)))


def credential_by_name(session: Session, kind: str, name: str) -> CredentialRow | None:
    return session.scalars(select(CredentialRow).where(CredentialRow.kind == kind,
                                                       CredentialRow.name == name)).first()


@dataclass(frozen=True, slots=True)
class DailyCount:
    day: str  # YYYY-MM-DD (UTC)
    protocol: str
    backend: str
    count: int


def issued_per_day(session: Session, *, since: dt.datetime) -> list[DailyCount]:
    """Certificates issued per UTC day, protocol and backend (grouped in Python: portable)."""
    rows = session.execute(
        select(CertificateRow.created_at, CertificateRow.protocol, CertificateRow.backend)
        .where(CertificateRow.created_at >= since))
    counts: dict[tuple[str, str, str], int] = {}
    for created_at, protocol, backend in rows:
        key = (created_at.astimezone(dt.UTC).strftime("%Y-%m-%d"), protocol, backend)
        counts[key] = counts.get(key, 0) + 1
    return [DailyCount(day, protocol, backend, count)
            for (day, protocol, backend), count in sorted(counts.items())]


def expiring(session: Session, *, now: dt.datetime, within: dt.timedelta,
             limit: int = 50) -> list[CertificateRow]:
    return list(session.scalars(
        select(CertificateRow)
        .where(CertificateRow.status == CertificateStatus.VALID,
               CertificateRow.not_after >= now, CertificateRow.not_after < now + within)
        .order_by(CertificateRow.not_after).limit(limit)))
