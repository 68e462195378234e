"""Repositories and migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from gateway.model import Identifier, IdentifierType, IssuedCertificate, RevocationReason
from gateway.store import certificates, credentials
from gateway.store.db import Database
from gateway.store.migrate import current_heads
from tests.support.fakes import FakeBackend

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _issued(backend: FakeBackend, cn: str, sans: tuple[str, ...], days: int) -> IssuedCertificate:
    import asyncio

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from gateway.model import (
        Decision,
        EnrollmentRequest,
        Operation,
        Outcome,
        Principal,
        PrincipalKind,
        Protocol,
    )
    from tests.support.pki import csr_der, make_csr

    csr, _ = make_csr(cn, dns=sans)
    decision = Decision(Outcome.APPROVED, "ok", "p", backend="fake", not_before=NOW,
                        not_after=NOW + dt.timedelta(days=days),
                        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
                        sans=tuple(Identifier(IdentifierType.DNS, s) for s in sans))
    request = EnrollmentRequest(Protocol.EST, Operation.ENROLL, "p", csr, csr_der(csr),
                                Principal(PrincipalKind.ADMIN, "t"))
    issued = asyncio.run(backend.issue(request, decision))
    assert isinstance(issued, IssuedCertificate)
    return issued


def test_migrations_reach_head(database: Database) -> None:
    from alembic.script import ScriptDirectory

    from gateway.store.migrate import alembic_config

    heads = set(ScriptDirectory.from_config(alembic_config(database.url)).get_heads())
    assert current_heads(database.engine.url.render_as_string(hide_password=False)) == heads


def test_inventory_search_by_every_field(database: Database) -> None:
    backend = FakeBackend()
    a = _issued(backend, "alpha.example.test", ("alpha.example.test", "www.alpha.example.test"), 10)
    b = _issued(backend, "beta.example.test", ("beta.example.test",), 200)
    with database.session() as session:
        for issued, profile in ((a, "web"), (b, "iot")):
            certificates.add(session, issued, profile=profile, protocol="est", request_id=None,
                             principal_id="t", replaces_serial=None, issuer_id=None, now=NOW)
    with database.session() as session:
        def serials(**kw: object) -> set[str]:
            where = certificates.CertificateFilter(**kw)  # type: ignore[arg-type]
            return {row.serial for row in certificates.search(session, where)}

        assert serials(serial=a.serial.upper()) == {a.serial}
        assert serials(subject="beta") == {b.serial}
        assert serials(san="www.alpha") == {a.serial}
        assert serials(profile="iot") == {b.serial}
        assert serials(expiring_before=NOW + dt.timedelta(days=30)) == {a.serial}
        assert serials(status="valid") == {a.serial, b.serial}
        row = certificates.get(session, a.serial)
        assert row is not None
        assert certificates.chain_of(row) == list(a.chain)
        certificates.mark_revoked(session, row, reason=RevocationReason.SUPERSEDED,
                                  requested_by="t", state="done", detail="", now=NOW)
    with database.session() as session:
        assert {r.serial for r in certificates.revoked_for(session, backend="fake",
                                                            issuer_id=None)} == {a.serial}
        # A serial is unique: the same certificate cannot be recorded twice.
        import pytest
        from sqlalchemy.exc import IntegrityError

        with pytest.raises(IntegrityError):
            certificates.add(session, b, profile="iot", protocol="est", request_id=None,
                             principal_id="t", replaces_serial=None, issuer_id=None, now=NOW)


def test_serial_normalisation() -> None:
    assert certificates.normalize_serial("0A:FF:01") == "aff01"
    assert certificates.normalize_serial("0x00ab") == "ab"


def test_limited_credential_uses_are_atomic(database: Database) -> None:
    with database.session() as session:
        row = credentials.add(session, kind="scep-challenge", profile="p", name="c1",
                              secret_hash="h", now=NOW, uses_left=2)
        credential_id = row.id
    taken = []
    for _ in range(3):
        with database.session() as session:
            taken.append(credentials.consume_use(session, credential_id))
    assert taken == [True, True, False]
