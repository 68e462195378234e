"""Admin API tokens: stored hashed, found by id, refused when wrong, disabled or expired."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.auth.tokens import Role, authenticate, create_token, disable_token, list_tokens
from gateway.errors import ErrorKind, GatewayError
from gateway.store.db import Database
from gateway.store.tables import CredentialRow

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)


def test_token_round_trip_and_only_a_hash_is_stored(database: Database) -> None:
    with database.session() as session:
        identity, token = create_token(session, role=Role.OPERATOR, name="ops", now=NOW)
    with database.session() as session:
        found = authenticate(session, token, now=NOW)
        row = session.get(CredentialRow, identity.id)
        assert row is not None and token.split(".", 1)[1] not in row.secret_hash
        assert row.secret_hash.startswith("scrypt$")
    assert found == identity and found.role is Role.OPERATOR


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
    lambda t: t.replace("gh_", "xx_"),  # wrong prefix
    lambda t: t.split(".")[0],  # no secret
    lambda t: "gh_00000000-0000-0000-0000-000000000000." + t.split(".")[1],  # unknown id
    lambda t: "gh_' OR 1=1 --.x",
    lambda t: t + "x" * 200,
])
def test_wrong_tokens_are_refused(sqlite_database: Database, mangle) -> None:  # type: ignore[no-untyped-def]
    with sqlite_database.session() as session:
        _identity, token = create_token(session, role=Role.ADMIN, name="a", now=NOW)
    with sqlite_database.session() as session:
        assert authenticate(session, mangle(token), now=NOW) is None


def test_disabled_and_expired_tokens_are_refused(sqlite_database: Database) -> None:
    with sqlite_database.session() as session:
        _a, disabled = create_token(session, role=Role.ADMIN, name="d", now=NOW)
        _b, expiring = create_token(session, role=Role.ADMIN, name="e", now=NOW,
                                    expires_at=NOW + dt.timedelta(hours=1))
        assert disable_token(session, "d") and not disable_token(session, "nobody")
    with sqlite_database.session() as session:
        assert authenticate(session, disabled, now=NOW) is None
        assert authenticate(session, expiring, now=NOW) is not None
        assert authenticate(session, expiring, now=NOW + dt.timedelta(hours=2)) is None
        assert {t.name: t.disabled for t in list_tokens(session)} == {"d": True, "e": False}


def test_names_are_unique_and_well_formed(sqlite_database: Database) -> None:
    with sqlite_database.session() as session:
        create_token(session, role=Role.AUDITOR, name="same", now=NOW)
        with pytest.raises(GatewayError) as conflict:
            create_token(session, role=Role.AUDITOR, name="same", now=NOW)
        assert conflict.value.kind is ErrorKind.CONFLICT
        with pytest.raises(GatewayError):
            create_token(session, role=Role.AUDITOR, name="bad name\n", now=NOW)


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.ADMIN.allows(Role.AUDITOR)
    assert Role.OPERATOR.allows(Role.AUDITOR) and not Role.OPERATOR.allows(Role.ADMIN)
    assert not Role.AUDITOR.allows(Role.OPERATOR)
