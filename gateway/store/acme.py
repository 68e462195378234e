"""Repository functions for ACME state.  They never commit: the ACME state port
(gateway.services.acme) owns each transaction."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select, update
from sqlalchemy.orm import Session

from gateway.store.acme_tables import (
    AcmeAccountRow,
    AcmeAuthorizationRow,
    AcmeChallengeRow,
    AcmeNonceRow,
    AcmeOrderRow,
)


def new_id() -> str:
    """Unguessable object ids: they appear in URLs (RFC 8555 §10.2 timing of ids)."""
    return secrets.token_urlsafe(16)


# -- nonces (RFC 8555 §6.5) -------------------------------------------------------------


def purge_nonces(session: Session, *, now: dt.datetime) -> int:
    result = session.execute(delete(AcmeNonceRow).where(AcmeNonceRow.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)


# -- accounts ---------------------------------------------------------------------------


def account(session: Session, account_id: str) -> AcmeAccountRow | None:
    return session.get(AcmeAccountRow, account_id)


def account_by_thumbprint(session: Session, profile: str, thumbprint: str) -> AcmeAccountRow | None:
    return session.scalars(select(AcmeAccountRow).where(
        AcmeAccountRow.profile == profile, AcmeAccountRow.thumbprint == thumbprint)).first()


def add_account(session: Session, *, profile: str, thumbprint: str, jwk: dict[str, object],
                contact: list[str], tos_agreed: bool, eab_kid: str | None,
                now: dt.datetime) -> AcmeAccountRow:
    row = AcmeAccountRow(id=new_id(), profile=profile, thumbprint=thumbprint, jwk=dict(jwk),
                         status="valid", contact=contact, tos_agreed=tos_agreed,
                         eab_kid=eab_kid, created_at=now)
    session.add(row)
    session.flush()
    return row


# -- orders, authorizations, challenges -------------------------------------------------


def order_ids(session: Session, account_id: str, statuses: list[str], *, limit: int) -> list[str]:
    return list(session.scalars(select(AcmeOrderRow.id).where(
        AcmeOrderRow.account_id == account_id, AcmeOrderRow.status.in_(statuses))
        .order_by(AcmeOrderRow.created_at).limit(limit)))


def count_orders_since(session: Session | Connection, account_id: str, since: dt.datetime) -> int:
    return int(session.scalar(select(func.count()).select_from(AcmeOrderRow).where(
        AcmeOrderRow.account_id == account_id, AcmeOrderRow.created_at >= since)) or 0)


def count_identifier_since(session: Session | Connection, value: str, since: dt.datetime) -> int:
    return int(session.scalar(select(func.count()).select_from(AcmeAuthorizationRow).where(
        AcmeAuthorizationRow.identifier_value == value,
        AcmeAuthorizationRow.created_at >= since)) or 0)


def due_challenges(session: Session, *, now: dt.datetime, limit: int = 20) -> list[str]:
    query = (select(AcmeChallengeRow.id)
             .where(AcmeChallengeRow.status == "processing",
                    AcmeChallengeRow.next_attempt_at <= now,
                    (AcmeChallengeRow.lease_until.is_(None)) | (AcmeChallengeRow.lease_until < now))
             .limit(limit))
    return list(session.scalars(query))


# -- the hot path through Core connections (no ORM): every signed request and poll ------


_ACCOUNTS: Table = AcmeAccountRow.__table__  # type: ignore[assignment]
_NONCES: Table = AcmeNonceRow.__table__  # type: ignore[assignment]
_AUTHZS: Table = AcmeAuthorizationRow.__table__  # type: ignore[assignment]
_CHALLENGES: Table = AcmeChallengeRow.__table__  # type: ignore[assignment]
_ORDERS: Table = AcmeOrderRow.__table__  # type: ignore[assignment]


def fast_issue_nonce(connection: Connection, *, now: dt.datetime, lifetime: dt.timedelta) -> str:
    value = secrets.token_urlsafe(16)
    connection.execute(insert(_NONCES).values(value=value, expires_at=now + lifetime))
    return value


def fast_consume_nonce(connection: Connection, value: str, *, now: dt.datetime) -> bool:
    result = connection.execute(delete(_NONCES).where(_NONCES.c.value == value,
                                                      _NONCES.c.expires_at > now))
    return result.rowcount == 1


def fast_account(connection: Connection, account_id: str) -> Any:
    return connection.execute(select(_ACCOUNTS).where(_ACCOUNTS.c.id == account_id)).first()


def fast_authorization(connection: Connection, authz_id: str) -> Any:
    return connection.execute(select(_AUTHZS).where(_AUTHZS.c.id == authz_id)).first()


def fast_challenges(connection: Connection, authz_id: str) -> list[Any]:
    return list(connection.execute(select(_CHALLENGES).where(
        _CHALLENGES.c.authorization_id == authz_id).order_by(_CHALLENGES.c.type)))


def fast_order(connection: Connection, order_id: str) -> Any:
    return connection.execute(select(_ORDERS).where(_ORDERS.c.id == order_id)).first()


def fast_authz_states(connection: Connection, order_id: str) -> list[Any]:
    return list(connection.execute(
        select(_AUTHZS.c.id, _AUTHZS.c.status, _AUTHZS.c.identifier_type,
               _AUTHZS.c.identifier_value)
        .where(_AUTHZS.c.order_id == order_id).order_by(_AUTHZS.c.identifier_value)))


_TABLES = {"order": _ORDERS, "authz": _AUTHZS, "challenge": _CHALLENGES}


def fast_update(connection: Connection, kind: str, object_id: str, **values: Any) -> None:
    table = _TABLES[kind]
    connection.execute(update(table).where(table.c.id == object_id).values(**values))


def fast_update_where(connection: Connection, kind: str, object_id: str, *,
                      status: str | tuple[str, ...], values: dict[str, Any]) -> bool:
    """Update the object only if its status is (one of) ``status``; True if it was."""
    table = _TABLES[kind]
    allowed = (status,) if isinstance(status, str) else status
    result = connection.execute(update(table).where(table.c.id == object_id,
                                                    table.c.status.in_(allowed)).values(**values))
    return result.rowcount == 1


def fast_claim_challenge(connection: Connection, challenge_id: str, *, now: dt.datetime,
                         lease_until: dt.datetime) -> bool:
    """Take the validation lease on a processing challenge (one worker runs it)."""
    c = _CHALLENGES.c
    result = connection.execute(
        update(_CHALLENGES)
        .where(c.id == challenge_id, c.status == "processing",
               (c.lease_until.is_(None)) | (c.lease_until < now))
        .values(lease_until=lease_until))
    return result.rowcount == 1


def fast_challenge(connection: Connection, challenge_id: str) -> Any:
    return connection.execute(select(_CHALLENGES).where(_CHALLENGES.c.id == challenge_id)).first()


def fast_insert(connection: Connection, kind: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        connection.execute(insert(_TABLES[kind]), rows)
