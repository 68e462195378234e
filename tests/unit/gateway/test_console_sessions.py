"""gateway.store.console_sessions on SQLite and PostgreSQL: hashed ids, idle and absolute
expiry, sign-out, purge."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from gateway.auth.tokens import Role, create_token, identity_of
from gateway.store import console_sessions
from gateway.store.console_sessions import ConsoleSessionRow
from gateway.store.db import Database

T0 = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
IDLE = dt.timedelta(hours=1)
LIFETIME = dt.timedelta(hours=8)


def _open(database: Database, now: dt.datetime = T0) -> tuple[str, str]:
    with database.session() as session:
        identity, _token = create_token(session, role=Role.AUDITOR,
                                        name=f"t{now.timestamp():.0f}", now=now)
        session_id = console_sessions.create(session, token_id=identity.id, now=now,
                                             lifetime=LIFETIME)
    return identity.id, session_id


def _live(database: Database, session_id: str, now: dt.datetime) -> bool:
    with database.session() as session:
        return console_sessions.find_live(session, session_id, now=now, idle=IDLE) is not None


def test_only_the_hash_is_stored_and_idle_sessions_die(database: Database) -> None:
    token_id, session_id = _open(database)
    with database.session() as session:
        row = session.scalars(select(ConsoleSessionRow)).one()
        assert row.id_hash != session_id and len(session_id) >= 43
        assert identity_of(session, token_id, now=T0) is not None
    for minutes in (50, 100, 150):  # each visit within the idle time keeps it alive
        assert _live(database, session_id, T0 + dt.timedelta(minutes=minutes))
    assert not _live(database, session_id, T0 + dt.timedelta(minutes=150) + IDLE)
    assert not _live(database, "forged", T0)


def test_absolute_expiry_sign_out_and_purge(database: Database) -> None:
    _token_id, session_id = _open(database)
    assert not _live(database, session_id, T0 + LIFETIME)  # active or not
    _token_id, other = _open(database, T0 + dt.timedelta(minutes=1))
    with database.session() as session:
        console_sessions.end(session, other)
    assert not _live(database, other, T0 + dt.timedelta(minutes=2))
    _open(database, T0 + dt.timedelta(minutes=3))  # never visited again
    later = T0 + LIFETIME + dt.timedelta(hours=1)
    _open(database, later)  # creating a session purges the expired ones
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(ConsoleSessionRow)) == 1
