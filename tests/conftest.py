"""Shared fixtures: databases built by the real migrations, on SQLite and PostgreSQL.

PostgreSQL is at $GATEHOUSE_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test).  Each test session works in a schema of its
own, dropped at the end.  When the server is unreachable the PostgreSQL tests FAIL, as
CI requires; set GATEHOUSE_TEST_SKIP_POSTGRES=1 to skip them on a laptop without it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

from gateway.store.db import Database
from gateway.store.migrate import upgrade

# Property and fuzz tests run the same examples on every run (CI must not flake on a new
# random draw); GATEHOUSE_HYPOTHESIS_PROFILE=explore searches afresh when hunting bugs.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("GATEHOUSE_HYPOTHESIS_PROFILE", "ci"))

POSTGRES_URL = os.environ.get("GATEHOUSE_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


def _psycopg_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server; its URL selects it by search_path."""
    if os.environ.get("GATEHOUSE_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("GATEHOUSE_TEST_SKIP_POSTGRES=1")
    base = _psycopg_url(POSTGRES_URL)
    engine = create_engine(base)
    schema = f"gh_test_{secrets.token_hex(4)}"
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        tables = connection.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars().all()
        for table in tables:
            connection.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """An empty database with the schema made by the Alembic migrations."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'gatehouse.db'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
        _reset_postgres(url)
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'gatehouse.db'}"
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()
