"""SCEP challenge passwords: one-time, expiring, subject-bound, static (gateway.auth.challenges)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from cryptography import x509

from gateway.auth import challenges
from gateway.auth.secrets import hash_secret
from gateway.errors import ErrorKind, GatewayError
from gateway.model import PrincipalKind
from gateway.store import credentials
from gateway.store.db import Database

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _create(db: Database, **kwargs: object) -> challenges.IssuedChallenge:
    with db.session() as session:
        return challenges.create_challenge(session, profile="default", now=NOW, ttl=HOUR,
                                           **kwargs)  # type: ignore[arg-type]


def _consume(db: Database, secret: str, *, cn: str | None = "dev", profile: str = "default",
             now: dt.datetime = NOW, sans: tuple[str, ...] = ()) -> challenges.Principal:
    names = ([cn] if cn is not None else []) + list(sans)
    with db.session() as session:
        return challenges.consume_challenge(session, profile=profile, secret=secret,
                                            names=names, now=now)


def test_challenge_is_stored_hashed_and_used_once(database: Database) -> None:
    issued = _create(database)
    assert len(issued.secret) == 32
    with database.session() as session:
        rows = credentials.list_kind(session, kind=challenges.KIND)
        assert len(rows) == 1
        assert issued.secret not in rows[0].name + rows[0].secret_hash
    principal = _consume(database, issued.secret)
    assert principal.kind is PrincipalKind.SCEP_CHALLENGE and principal.id == issued.id
    with pytest.raises(GatewayError, match="already used") as raised:
        _consume(database, issued.secret)
    assert raised.value.kind is ErrorKind.UNAUTHORIZED


def test_batch_challenge_allows_n_uses(database: Database) -> None:
    issued = _create(database, uses=3)
    for _ in range(3):
        _consume(database, issued.secret)
    with pytest.raises(GatewayError, match="already used"):
        _consume(database, issued.secret)


def test_expired_unknown_and_other_profile_challenges_fail(database: Database) -> None:
    issued = _create(database)
    with pytest.raises(GatewayError, match="expired"):
        _consume(database, issued.secret, now=NOW + 2 * HOUR)
    with pytest.raises(GatewayError, match="unknown"):
        _consume(database, "0" * 32)
    with pytest.raises(GatewayError, match="unknown"):
        _consume(database, issued.secret, profile="other")


def test_subject_pattern_must_fully_match_the_cn(database: Database) -> None:
    issued = _create(database, subject_pattern=r"kiosk-\d+", uses=5)
    for cn in ("kiosk-12x", "laptop", None):
        with pytest.raises(GatewayError, match="not valid for this subject"):
            _consume(database, issued.secret, cn=cn)
    _consume(database, issued.secret, cn="kiosk-12")
    with pytest.raises(GatewayError, match="bad subject pattern"):
        _create(database, subject_pattern="(")


def test_subject_pattern_must_match_every_name(database: Database) -> None:
    issued = _create(database, subject_pattern=r"kiosk-\d+", uses=5)
    for sans in (("www.bank.example",), ("kiosk-1", "admin.corp.example")):
        with pytest.raises(GatewayError, match="not valid for this subject"):
            _consume(database, issued.secret, cn="kiosk-1", sans=sans)
    with pytest.raises(GatewayError, match="not valid for this subject"):
        _consume(database, issued.secret, cn=None, sans=())
    _consume(database, issued.secret, cn="kiosk-1", sans=("kiosk-2",))


def test_subject_pattern_ignores_case_like_the_name_rules(database: Database) -> None:
    # DNS names compare without case (RFC 4343); the name rules' patterns do too.
    issued = _create(database, subject_pattern=r"dev1\.example\.com", uses=5)
    _consume(database, issued.secret, cn="DEV1.example.com", sans=("Dev1.Example.COM",))
    with pytest.raises(GatewayError, match="not valid for this subject"):
        _consume(database, issued.secret, cn="DEV2.example.com")


def test_csr_names_lists_every_cn_and_san() -> None:
    from cryptography.x509.oid import NameOID

    from tests.support.pki import make_csr

    csr, _ = make_csr("a.example.com", dns=["b.example.com"], ips=["10.0.0.1"],
                      emails=["x@example.com"], uris=["urn:x"],
                      extra_subject=[x509.NameAttribute(NameOID.COMMON_NAME, "second")])
    assert sorted(challenges.csr_names(csr)) == sorted(
        ["second", "a.example.com", "b.example.com", "10.0.0.1", "x@example.com", "urn:x"])


def test_bad_arguments_are_refused(database: Database) -> None:
    with pytest.raises(GatewayError):
        _create(database, uses=0)
    with database.session() as session, pytest.raises(GatewayError):
        challenges.create_challenge(session, profile="default", now=NOW,
                                    ttl=dt.timedelta(0))


def test_concurrent_consumers_get_exactly_the_uses(sqlite_database: Database) -> None:
    issued = _create(sqlite_database, uses=2)
    results: list[str] = []

    def consume() -> None:
        try:
            _consume(sqlite_database, issued.secret)
            results.append("ok")
        except GatewayError:
            results.append("refused")
        except Exception as exc:  # SQLite busy under contention counts as a refusal
            results.append(f"error {type(exc).__name__}")

    threads = [threading.Thread(target=consume) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("ok") == 2


def test_static_challenge_by_hash_and_by_clear_value() -> None:
    stored = hash_secret("correct horse battery")
    assert challenges.check_static("correct horse battery", stored_hash=stored, clear_value=None)
    assert challenges.check_static("correct horse battery", stored_hash=stored, clear_value=None)
    assert not challenges.check_static("wrong", stored_hash=stored, clear_value=None)
    assert challenges.check_static("env-secret", stored_hash=None, clear_value="env-secret")
    assert not challenges.check_static("x", stored_hash=None, clear_value="env-secret")
    assert not challenges.check_static("x", stored_hash=None, clear_value=None)
    assert challenges.static_principal("p").id == "static:p"
