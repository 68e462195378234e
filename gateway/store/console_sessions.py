"""Console sign-in sessions: the table and its repository functions.

The browser holds a random 256-bit session id; the database holds only its SHA-256, so
a copy of the database does not sign anyone in.  A session ends at sign-out, after
``idle`` without a request, at its absolute ``expires_at``, or when its token is
disabled, expires or is deleted (the foreign key cascades).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import ForeignKey, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.store.base import Base, UtcDateTime

# Refresh last_seen_at at most this often, so browsing is not one write per page.
TOUCH_EVERY = dt.timedelta(seconds=60)


class ConsoleSessionRow(Base):
    """One signed-in console browser."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("credentials.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def create(session: Session, *, token_id: str, now: dt.datetime,
           lifetime: dt.timedelta) -> str:
    """Store a new session for ``token_id``; returns the id for the cookie (shown once).

    Expired sessions are purged here, so the table holds only live ones."""
    session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at <= now))
    session_id = secrets.token_urlsafe(32)
    session.add(ConsoleSessionRow(id_hash=id_hash(session_id), token_id=token_id,
                                  created_at=now, last_seen_at=now, expires_at=now + lifetime))
    session.flush()
    return session_id


def find_live(session: Session, session_id: str, *, now: dt.datetime,
              idle: dt.timedelta) -> ConsoleSessionRow | None:
    """The session, refreshed, if it exists and has neither expired nor idled out."""
    row = session.scalars(select(ConsoleSessionRow)
                          .where(ConsoleSessionRow.id_hash == id_hash(session_id))).first()
    if row is None:
        return None
    if row.expires_at <= now or row.last_seen_at + idle <= now:
        session.delete(row)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return row


def end(session: Session, session_id: str) -> None:
    session.execute(delete(ConsoleSessionRow)
                    .where(ConsoleSessionRow.id_hash == id_hash(session_id)))
