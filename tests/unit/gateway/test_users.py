"""HTTP Basic users: verification against the credentials table, and the short cache."""

from __future__ import annotations

import datetime as dt

from gateway.auth.secrets import hash_secret
from gateway.auth.users import PASSWORD_KIND, User, UserDirectory
from gateway.store import credentials
from gateway.store.db import Database

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _add(db: Database, profile: str, name: str, password: str) -> None:
    with db.session() as session:
        credentials.add(session, kind=PASSWORD_KIND, profile=profile, name=name,
                        secret_hash=hash_secret(password, cost=(10, 8, 1)), now=NOW)


def _set(db: Database, profile: str, name: str, *, password: str | None = None,
         disabled: bool | None = None) -> None:
    with db.session() as session:
        row = credentials.find(session, kind=PASSWORD_KIND, profile=profile, name=name)
        assert row is not None
        if password is not None:
            row.secret_hash = hash_secret(password, cost=(10, 8, 1))
        if disabled is not None:
            row.disabled = disabled


def test_verify_right_wrong_unknown_and_other_profile(database: Database) -> None:
    _add(database, "default", "dev", "correct horse")
    users = UserDirectory(database)
    assert users.verify("default", "dev", "correct horse") == User("default", "dev")
    assert users.verify("default", "dev", "wrong") is None
    assert users.verify("default", "nobody", "correct horse") is None
    assert users.verify("iot", "dev", "correct horse") is None  # users belong to a profile
    assert users.verify("default", "", "x") is None
    assert users.verify("default", "dev", "") is None


def test_cache_remembers_success_for_the_ttl_only(database: Database) -> None:
    _add(database, "default", "dev", "first password")
    ticker = Ticker()
    users = UserDirectory(database, cache_seconds=60, monotonic=ticker)
    assert users.verify("default", "dev", "first password")
    _set(database, "default", "dev", password="second password", disabled=True)
    # Within the TTL the cached success still answers, without the database.
    ticker.now += 59
    assert users.verify("default", "dev", "first password")
    # After it, the change (disabled, new password) takes effect.
    ticker.now += 2
    assert users.verify("default", "dev", "first password") is None
    _set(database, "default", "dev", disabled=False)
    assert users.verify("default", "dev", "second password")
    assert users.verify("default", "dev", "first password") is None


def test_failures_are_not_cached_and_cache_can_be_off(database: Database) -> None:
    _add(database, "default", "dev", "a password")
    ticker = Ticker()
    users = UserDirectory(database, cache_seconds=0, monotonic=ticker)
    assert users.verify("default", "dev", "wrong") is None
    assert users.verify("default", "dev", "a password")
    _set(database, "default", "dev", disabled=True)
    assert users.verify("default", "dev", "a password") is None  # no cache: immediate


def test_cache_holds_no_password(database: Database) -> None:
    _add(database, "default", "dev", "plain secret")
    users = UserDirectory(database)
    assert users.verify("default", "dev", "plain secret")
    for key in users._cache:
        assert b"plain secret" not in key and len(key) == 32
    users.forget()
    assert not users._cache


def test_verify_async_checks_off_the_event_loop_and_uses_the_cache(
        database: Database) -> None:
    """A real check runs in a worker thread (scrypt must not stall the event loop); a
    cached success answers without one; a wrong password is refused either way."""
    import asyncio
    import threading

    _add(database, "default", "dev", "right-password")
    users = UserDirectory(database, cache_seconds=60, monotonic=Ticker())
    loop_thread = threading.get_ident()
    seen: list[int] = []
    real_verify = users.verify

    def spy(profile: str, name: str, password: str) -> User | None:
        seen.append(threading.get_ident())
        return real_verify(profile, name, password)

    users.verify = spy  # type: ignore[method-assign]

    async def scenario() -> tuple[User | None, User | None, User | None]:
        first = await users.verify_async("default", "dev", "right-password")
        cached = await users.verify_async("default", "dev", "right-password")
        wrong = await users.verify_async("default", "dev", "wrong-password")
        return first, cached, wrong

    first, cached, wrong = asyncio.run(scenario())
    assert first == User("default", "dev") and cached == User("default", "dev")
    assert wrong is None
    assert len(seen) == 2  # the first check and the wrong one; the cached one needs none
    assert all(ident != loop_thread for ident in seen)
