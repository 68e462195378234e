"""ACME repositories on SQLite and PostgreSQL (schema built by the migrations)."""

from __future__ import annotations

import datetime as dt

from gateway.store import acme as store
from gateway.store.db import Database

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
LIFE = dt.timedelta(minutes=5)


def test_nonce_used_once_and_expires(database: Database) -> None:
    with database.begin() as connection:
        nonce = store.fast_issue_nonce(connection, now=NOW, lifetime=LIFE)
        old = store.fast_issue_nonce(connection, now=NOW - dt.timedelta(hours=1), lifetime=LIFE)
    with database.begin() as connection:
        assert store.fast_consume_nonce(connection, nonce, now=NOW)
        assert not store.fast_consume_nonce(connection, nonce, now=NOW)  # replayed
        assert not store.fast_consume_nonce(connection, old, now=NOW)  # expired
        assert not store.fast_consume_nonce(connection, "never-issued", now=NOW)
    with database.session() as session:
        assert store.purge_nonces(session, now=NOW) == 1


def _order(database: Database) -> str:
    with database.session() as session:
        account = store.add_account(session, profile="default", thumbprint="t", jwk={"kty": "EC"},
                                    contact=[], tos_agreed=True, eab_kid=None, now=NOW)
        account_id = account.id
    with database.begin() as connection:
        store.fast_insert(connection, "order", [{
            "id": "o1", "account_id": account_id, "profile": "default", "directory": "default",
            "status": "pending", "identifiers": [{"type": "dns", "value": "a.test"}],
            "not_before": None, "not_after": None, "expires": NOW + LIFE, "error": None,
            "replaces": None, "request_id": None, "certificate_serial": None,
            "created_at": NOW, "updated_at": NOW}])
        store.fast_insert(connection, "authz", [{
            "id": "z1", "order_id": "o1", "account_id": account_id, "identifier_type": "dns",
            "identifier_value": "a.test", "wildcard": False, "status": "pending",
            "expires": NOW + LIFE, "created_at": NOW}])
        store.fast_insert(connection, "challenge", [{
            "id": "c1", "authorization_id": "z1", "type": "http-01", "token": "tok",
            "status": "processing", "validated": None, "error": None, "attempts": 0,
            "next_attempt_at": NOW, "lease_until": None, "detail": ""}])
    return account_id


def test_validation_lease_is_exclusive(database: Database) -> None:
    account_id = _order(database)
    with database.begin() as connection:
        assert store.count_orders_since(connection, account_id, NOW) == 1
        assert store.count_identifier_since(connection, "a.test", NOW) == 1
        assert store.fast_claim_challenge(connection, "c1", now=NOW, lease_until=NOW + LIFE)
        assert not store.fast_claim_challenge(connection, "c1", now=NOW, lease_until=NOW + LIFE)
    with database.session() as session:
        assert store.due_challenges(session, now=NOW) == []  # leased
        later = NOW + LIFE + dt.timedelta(seconds=1)
        assert store.due_challenges(session, now=later) == ["c1"]  # the lease ran out
    with database.begin() as connection:
        assert store.fast_claim_challenge(connection, "c1", now=NOW + 2 * LIFE,
                                          lease_until=NOW + 3 * LIFE)
        store.fast_update(connection, "challenge", "c1", status="valid", lease_until=None)
        assert store.fast_challenge(connection, "c1").status == "valid"
        assert [a.id for a in store.fast_authz_states(connection, "o1")] == ["z1"]
        assert store.fast_account(connection, account_id).jwk == {"kty": "EC"}


def test_migration_0002_matches_the_acme_tables(database: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gateway.store.schema import metadata

    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    assert [d for d in diff if "acme" in repr(d)] == []
