"""Repository functions for ACME state.  They never commit: the caller's session does."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import delete, func, select, update
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


def issue_nonce(session: Session, *, now: dt.datetime, lifetime: dt.timedelta) -> str:
    value = secrets.token_urlsafe(16)
    session.add(AcmeNonceRow(value=value, expires_at=now + lifetime))
    return value


def consume_nonce(session: Session, value: str, *, now: dt.datetime) -> bool:
    """Delete the nonce if it is known and unexpired; True when it was (atomic)."""
    result = session.execute(delete(AcmeNonceRow).where(AcmeNonceRow.value == value,
                                                        AcmeNonceRow.expires_at > now))
    return bool(getattr(result, "rowcount", 0) == 1)


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


def order(session: Session, order_id: str) -> AcmeOrderRow | None:
    return session.get(AcmeOrderRow, order_id)


def order_by_serial(session: Session, serial: str) -> AcmeOrderRow | None:
    return session.scalars(select(AcmeOrderRow).where(
        AcmeOrderRow.certificate_serial == serial)).first()


def count_orders_since(session: Session, account_id: str, since: dt.datetime) -> int:
    return int(session.scalar(select(func.count()).select_from(AcmeOrderRow).where(
        AcmeOrderRow.account_id == account_id, AcmeOrderRow.created_at >= since)) or 0)


def count_identifier_since(session: Session, value: str, since: dt.datetime) -> int:
    return int(session.scalar(select(func.count()).select_from(AcmeAuthorizationRow).where(
        AcmeAuthorizationRow.identifier_value == value,
        AcmeAuthorizationRow.created_at >= since)) or 0)


def authorizations(session: Session, order_id: str) -> list[AcmeAuthorizationRow]:
    return list(session.scalars(select(AcmeAuthorizationRow).where(
        AcmeAuthorizationRow.order_id == order_id).order_by(AcmeAuthorizationRow.identifier_value)))


def authorization(session: Session, authz_id: str) -> AcmeAuthorizationRow | None:
    return session.get(AcmeAuthorizationRow, authz_id)


def challenges(session: Session, authz_id: str) -> list[AcmeChallengeRow]:
    return list(session.scalars(select(AcmeChallengeRow).where(
        AcmeChallengeRow.authorization_id == authz_id).order_by(AcmeChallengeRow.type)))


def challenge(session: Session, challenge_id: str) -> AcmeChallengeRow | None:
    return session.get(AcmeChallengeRow, challenge_id)


def claim_challenge(session: Session, challenge_id: str, *, now: dt.datetime,
                    lease_until: dt.datetime) -> bool:
    """Take the validation lease on a processing challenge (one worker runs it)."""
    result = session.execute(
        update(AcmeChallengeRow)
        .where(AcmeChallengeRow.id == challenge_id, AcmeChallengeRow.status == "processing",
               (AcmeChallengeRow.lease_until.is_(None)) | (AcmeChallengeRow.lease_until < now))
        .values(lease_until=lease_until))
    return bool(getattr(result, "rowcount", 0) == 1)


def due_challenges(session: Session, *, now: dt.datetime, limit: int = 20) -> list[str]:
    query = (select(AcmeChallengeRow.id)
             .where(AcmeChallengeRow.status == "processing",
                    AcmeChallengeRow.next_attempt_at <= now,
                    (AcmeChallengeRow.lease_until.is_(None)) | (AcmeChallengeRow.lease_until < now))
             .limit(limit))
    return list(session.scalars(query))
