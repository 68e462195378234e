"""Audit events: in the database and as one JSON log line each."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from gateway.store.tables import AuditEventRow, audit_events_table

log = logging.getLogger("gatehouse.audit")


def record(session: Session | Connection, *, at: dt.datetime, actor: str, action: str, outcome: str,
           request_id: str | None = None, serial: str | None = None, profile: str | None = None,
           reason: str = "", **details: Any) -> None:
    session.execute(insert(audit_events_table), [dict(
        at=at, actor=actor, action=action, outcome=outcome, request_id=request_id,
        serial=serial, profile=profile, reason=reason, details=details)])
    log.info("audit", extra={"audit": {"actor": actor, "action": action, "outcome": outcome,
                                       "request_id": request_id, "serial": serial,
                                       "profile": profile, "reason": reason, **details}})


def recent(session: Session, *, action: str | None = None, limit: int = 100) -> list[AuditEventRow]:
    query = select(AuditEventRow).order_by(AuditEventRow.id.desc())
    if action:
        query = query.where(AuditEventRow.action == action)
    return list(session.scalars(query.limit(limit)))
