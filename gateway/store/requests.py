"""Repository functions for enrollment requests (the pipeline's state machine)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy import insert as insert_
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from gateway.csr_redaction import redact_challenge
from gateway.model import EnrollmentRequest, RequestState
from gateway.store.tables import RequestRow, requests_table


def new_request_id() -> str:
    return str(uuid.uuid4())


def insert(session: Session | Connection, request: EnrollmentRequest, *, request_id: str,
           now: dt.datetime, lease_until: dt.datetime | None) -> None:
    """Add a request in state ``received``, leased to the caller who drives it now.

    A Core INSERT (not the ORM unit of work): this is on every enrollment's hot path.
    """
    try:
        subject = request.csr.subject.rfc4514_string()
    except ValueError:
        subject = ""
    csr_der, verified = stored_csr(request)
    # A constant statement with parameters: compiled once, cached by SQLAlchemy.
    session.execute(insert_(requests_table), [dict(
        id=request_id,
        protocol=request.protocol.value,
        operation=request.operation.value,
        profile=request.profile,
        transaction_id=request.transaction_id,
        principal_kind=request.principal.kind.value,
        principal_id=request.principal.id,
        principal_attributes=dict(request.principal.attributes),
        csr_der=csr_der,
        csr_verified_at_receipt=verified,
        subject=subject,
        sans=[],
        proven_identifiers=[str(i) for i in request.proven_identifiers],
        renewal_of=request.renewal_of,
        requested_not_before=request.requested_not_before,
        requested_not_after=request.requested_not_after,
        state=RequestState.RECEIVED.value,
        reason="",
        attempts=0,
        next_attempt_at=now,
        lease_until=lease_until,
        created_at=now,
        updated_at=now,
    )])


def stored_csr(request: EnrollmentRequest) -> tuple[bytes, bool]:
    """The CSR as the database keeps it: without its challengePassword (docs/security.md,
    rule 8), and whether the original's signature verified (recorded only when the copy
    is redacted: a CSR without the attribute is kept as it came and verifies itself)."""
    try:
        redacted = redact_challenge(request.csr_der)
    except (ValueError, TypeError):
        return request.csr_der, False
    if redacted is None:
        return request.csr_der, False
    return redacted, request.csr_signature_ok


def keep_signed_csr(row: RequestRow, request: EnrollmentRequest) -> None:
    """Store the original signed CSR (challenge included) of a request that must wait.

    Remote CAs (Vault, ADCS) verify the CSR's signature themselves, so a request held for
    approval or waiting for its CA keeps what they need until it is final; then
    ``redact_final`` removes the challenge again.
    """
    if row.state in _WAITING and row.csr_der != request.csr_der:
        row.csr_der = request.csr_der


def redact_final(row: RequestRow) -> None:
    """Once a request is final (issued, denied, failed), its CSR keeps no challenge."""
    if row.state not in _FINAL:
        return
    try:
        redacted = redact_challenge(row.csr_der)
    except (ValueError, TypeError):
        return
    if redacted is not None:
        row.csr_der = redacted


_FINAL = (RequestState.ISSUED.value, RequestState.DENIED.value, RequestState.FAILED.value)
_WAITING = (RequestState.RECEIVED.value, RequestState.SUBMITTED.value, RequestState.HELD.value)


def get(session: Session, request_id: str) -> RequestRow | None:
    return session.get(RequestRow, request_id)


def by_transaction(session: Session, protocol: str, transaction_id: str) -> RequestRow | None:
    return session.scalars(
        select(RequestRow).where(RequestRow.protocol == protocol,
                                 RequestRow.transaction_id == transaction_id)
    ).first()


def claim(session: Session, request_id: str, *, now: dt.datetime, lease_until: dt.datetime,
          states: tuple[RequestState, ...]) -> bool:
    """Take the lease on a request in one of ``states`` unless another worker holds it.

    One conditional UPDATE, so two instances sharing the database never both drive it.
    """
    result = session.execute(
        update(RequestRow)
        .where(
            RequestRow.id == request_id,
            RequestRow.state.in_([s.value for s in states]),
            or_(RequestRow.lease_until.is_(None), RequestRow.lease_until < now),
        )
        .values(lease_until=lease_until)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def due(session: Session, *, now: dt.datetime, limit: int = 50) -> list[str]:
    """Ids of requests the retry worker should re-drive now."""
    rows = session.scalars(
        select(RequestRow.id)
        .where(
            RequestRow.state.in_([RequestState.RECEIVED.value, RequestState.SUBMITTED.value,
                                  RequestState.PENDING.value]),
            RequestRow.next_attempt_at <= now,
            or_(RequestRow.lease_until.is_(None), RequestRow.lease_until < now),
        )
        .order_by(RequestRow.next_attempt_at)
        .limit(limit)
    )
    return list(rows)


def update_values(session: Session | Connection, request_id: str, **values: Any) -> None:
    """One Core UPDATE by primary key."""
    session.execute(update(requests_table).where(requests_table.c.id == request_id)
                    .values(**values))


def set_state(row: RequestRow, state: RequestState, *, now: dt.datetime, reason: str | None = None,
              **values: Any) -> None:
    row.state = state.value
    row.updated_at = now
    if reason is not None:
        row.reason = reason
    for key, value in values.items():
        setattr(row, key, value)


def count_since(session: Session, *, principal_id: str, profile: str, since: dt.datetime) -> int:
    return int(session.scalar(
        select(func.count()).select_from(RequestRow).where(
            RequestRow.principal_id == principal_id,
            RequestRow.profile == profile,
            RequestRow.created_at >= since,
            RequestRow.state != RequestState.DENIED.value,
        )
    ) or 0)


@dataclass(frozen=True, slots=True)
class RequestFilter:
    state: RequestState | None = None
    profile: str | None = None
    protocol: str | None = None
    limit: int = 100
    offset: int = 0


def search(session: Session, where: RequestFilter) -> list[RequestRow]:
    query = select(RequestRow).order_by(RequestRow.created_at.desc())
    if where.state is not None:
        query = query.where(RequestRow.state == where.state.value)
    if where.profile:
        query = query.where(RequestRow.profile == where.profile)
    if where.protocol:
        query = query.where(RequestRow.protocol == where.protocol)
    return list(session.scalars(query.limit(where.limit).offset(where.offset)))


def count_by_state(session: Session, states: tuple[RequestState, ...]) -> dict[str, int]:
    """How many requests are in each of ``states`` (0 for a state with none)."""
    rows = session.execute(
        select(RequestRow.state, func.count()).where(RequestRow.state.in_([s.value for s in states]))
        .group_by(RequestRow.state))
    out = {state.value: 0 for state in states}
    for state, count in rows:
        out[str(state)] = int(count)
    return out
