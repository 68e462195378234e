"""The enrollment pipeline against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from gateway.backends import Backends
from gateway.clock import FixedClock
from gateway.config import ProfileConfig, RateLimit, RetryConfig
from gateway.enrollment import EnrollmentService
from gateway.errors import ErrorKind, GatewayError
from gateway.model import (
    EnrollmentRequest,
    Operation,
    Principal,
    PrincipalKind,
    Protocol,
    RequestState,
)
from gateway.policy import PolicyEngine
from gateway.store import certificates, requests
from gateway.store.db import Database
from gateway.store.tables import AuditEventRow, CertificateRow, RequestRow
from tests.support.fakes import FakeBackend
from tests.support.pki import csr_der, make_csr

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Env:
    def __init__(self, db: Database, **profiles: ProfileConfig) -> None:
        self.db = db
        self.clock = FixedClock(NOW)
        self.primary = FakeBackend("primary")
        self.secondary = FakeBackend("secondary")
        self.backends = Backends({"primary": self.primary, "secondary": self.secondary})
        profiles = profiles or {"default": ProfileConfig(backend="primary")}
        self.service = EnrollmentService(
            db, PolicyEngine(dict(profiles)), self.backends, self.clock,
            RetryConfig(max_attempts=3, base_delay=dt.timedelta(seconds=10),
                        max_delay=dt.timedelta(minutes=5)))

    def request(self, *, profile: str = "default", transaction_id: str | None = None,
                dns: tuple[str, ...] = ("device.example.test",), operation: Operation = Operation.ENROLL,
                renewal_of: str | None = None, principal: str = "alice",
                kind: PrincipalKind = PrincipalKind.PASSWORD, der: bytes | None = None) -> EnrollmentRequest:
        csr, _ = make_csr("device.example.test", dns=dns)
        from cryptography import x509

        der = der or csr_der(csr)
        return EnrollmentRequest(
            protocol=Protocol.EST, operation=operation, profile=profile,
            csr=x509.load_der_x509_csr(der), csr_der=der,
            principal=Principal(kind, principal), transaction_id=transaction_id,
            renewal_of=renewal_of)

    def row(self, request_id: str) -> RequestRow:
        with self.db.session() as session:
            row = requests.get(session, request_id)
            assert row is not None
            return row

    def count(self, table: Any) -> int:
        with self.db.session() as session:
            return len(session.scalars(select(table)).all())


def test_issue_persists_request_certificate_and_audit(database: Database) -> None:
    env = Env(database)
    result = run(env.service.submit(env.request()))
    assert result.state is RequestState.ISSUED
    assert result.certificate is not None
    row = env.row(result.request_id)
    assert row.state == "issued" and row.certificate_serial == result.certificate.serial
    assert row.sans == ["dns:device.example.test"]
    with database.session() as session:
        cert = certificates.get(session, result.certificate.serial)
        assert cert is not None and cert.profile == "default" and cert.protocol == "est"
        assert cert.request_id == result.request_id
        actions = [e.action for e in session.scalars(select(AuditEventRow))]
    assert actions == ["request.received", "certificate.issued"]


def test_same_transaction_is_idempotent(database: Database) -> None:
    env = Env(database)
    first = run(env.service.submit(env.request(transaction_id="tx-1")))
    again = run(env.service.submit(env.request(transaction_id="tx-1")))
    assert again.request_id == first.request_id
    assert again.certificate and first.certificate
    assert again.certificate.serial == first.certificate.serial
    assert env.primary.calls == 1
    assert env.count(CertificateRow) == 1


def test_policy_denial_is_recorded_and_raised(database: Database) -> None:
    from gateway.config import NameRules, SanRules

    env = Env(database, default=ProfileConfig(
        backend="primary", sans=SanRules(dns=NameRules(allow=["*.corp.test"]))))
    with pytest.raises(GatewayError) as caught:
        run(env.service.submit(env.request(transaction_id="tx-d")))
    assert caught.value.kind is ErrorKind.POLICY_DENIED
    assert "device.example.test" in caught.value.detail
    with database.session() as session:
        row = requests.by_transaction(session, "est", "tx-d")
        assert row is not None and row.state == "denied"
    assert env.count(CertificateRow) == 0 and env.primary.calls == 0
    # Asking again returns the same denial, not a new request.
    with pytest.raises(GatewayError) as again:
        run(env.service.submit(env.request(transaction_id="tx-d")))
    assert again.value.kind is ErrorKind.POLICY_DENIED
    assert env.count(RequestRow) == 1


def test_bad_csr_signature_is_bad_csr(database: Database) -> None:
    env = Env(database)
    csr, _ = make_csr("x.example.test")
    der = bytearray(csr_der(csr))
    der[-1] ^= 0x01
    with pytest.raises(GatewayError) as caught:
        run(env.service.submit(env.request(der=bytes(der))))
    assert caught.value.kind is ErrorKind.BAD_CSR
    assert env.count(CertificateRow) == 0


def test_unknown_profile(database: Database) -> None:
    env = Env(database)
    with pytest.raises(GatewayError) as caught:
        run(env.service.submit(env.request(profile="nope")))
    assert caught.value.kind is ErrorKind.UNKNOWN_PROFILE
    assert env.count(RequestRow) == 0


def test_manual_approval_then_issue(database: Database) -> None:
    env = Env(database, default=ProfileConfig(backend="primary", approval="manual"))
    held = run(env.service.submit(env.request(transaction_id="tx-h")))
    assert held.state is RequestState.HELD and held.retry_after
    assert env.primary.calls == 0
    # The client polls: still held.
    assert run(env.service.submit(env.request(transaction_id="tx-h"))).state is RequestState.HELD
    approved = run(env.service.approve(held.request_id, by="operator"))
    assert approved.state is RequestState.ISSUED and approved.certificate
    polled = run(env.service.submit(env.request(transaction_id="tx-h")))
    assert polled.certificate and polled.certificate.serial == approved.certificate.serial


def test_manual_denial(database: Database) -> None:
    env = Env(database, default=ProfileConfig(backend="primary", approval="manual"))
    held = run(env.service.submit(env.request()))
    env.service.deny(held.request_id, by="operator", reason="unknown device")
    with pytest.raises(GatewayError) as caught:
        env.service.result(held.request_id)
    assert caught.value.detail == "unknown device"
    with pytest.raises(GatewayError) as conflict:
        run(env.service.approve(held.request_id, by="operator"))
    assert conflict.value.kind is ErrorKind.CONFLICT


def test_backend_down_stays_retryable_then_completes(database: Database) -> None:
    env = Env(database)
    env.primary.mode = "down"
    result = run(env.service.submit(env.request()))
    assert result.state is RequestState.SUBMITTED and result.retry_after
    row = env.row(result.request_id)
    assert row.attempts == 1 and row.lease_until is None and "retrying" in row.reason
    # Not due yet: the worker leaves it alone.
    assert run(env.service.retry_due()) == 0
    env.primary.mode = "issue"
    env.clock.advance(dt.timedelta(minutes=1))
    assert run(env.service.retry_due()) == 1
    assert env.row(result.request_id).state == "issued"
    assert env.count(CertificateRow) == 1


def test_a_request_that_makes_the_backend_raise_fails_alone(
        database: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Security rule 11: an unexpected exception from a backend (or the policy) on one
    stored request fails that request with a generic reason; the worker goes on."""
    from cryptography import x509

    env = Env(database)
    env.primary.mode = "down"
    bad = run(env.service.submit(env.request(dns=("bad.example.test",))))
    env.clock.advance(dt.timedelta(seconds=30))
    good = run(env.service.submit(env.request(dns=("good.example.test",))))
    issue = env.primary.issue

    async def buggy(request: EnrollmentRequest, decision: Any) -> Any:
        names = request.csr.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        if "bad.example.test" in names:
            raise RuntimeError("a backend bug")
        return await issue(request, decision)

    env.primary.issue = buggy  # type: ignore[method-assign]
    env.primary.mode = "issue"
    env.clock.advance(dt.timedelta(minutes=10))
    assert run(env.service.retry_due()) == 2
    assert env.row(bad.request_id).state == "failed"
    assert env.row(bad.request_id).reason == "internal error while processing the request"
    assert env.row(good.request_id).state == "issued"
    assert [r.getMessage() for r in caplog.records if r.exc_info] == [
        "request failed unexpectedly"]


def test_a_backend_bug_while_the_client_waits_fails_that_request_at_once(
        database: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Security rule 11 on the fast path: the client gets INTERNAL with a generic reason
    (its protocol's server error, no traceback), the request is failed and released at
    once, and the next request on the same backend is issued (positive control)."""
    env = Env(database)
    issue = env.primary.issue
    calls = 0

    async def buggy_once(request: EnrollmentRequest, decision: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a backend bug at https://vault.internal")
        return await issue(request, decision)

    env.primary.issue = buggy_once  # type: ignore[method-assign]
    with pytest.raises(GatewayError) as caught:
        run(env.service.submit(env.request(dns=("bad.example.test",))))
    assert caught.value.kind is ErrorKind.INTERNAL
    assert "vault.internal" not in caught.value.detail
    failed = [row for row in env.service.list_requests(requests.RequestFilter())
              if row.state == "failed"]
    assert len(failed) == 1 and failed[0].reason == "internal error while processing the request"
    row = env.row(failed[0].id)
    assert row.lease_until is None and row.next_attempt_at is None
    assert [r.getMessage() for r in caplog.records if r.exc_info] == [
        "request failed unexpectedly"]
    good = run(env.service.submit(env.request(dns=("good.example.test",))))
    assert good.certificate is not None


def test_an_unreadable_certificate_is_refused_and_audited_even_if_revoke_breaks(
        database: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Security rule 4: a certificate cryptography cannot read (a duplicated extension)
    is a policy violation, not a 500; a revoke that raises something unexpected is logged
    and the ``backend.policy_violation`` audit record is still written."""
    import dataclasses

    from asn1crypto import x509 as asn1_x509

    env = Env(database)
    issue = env.primary.issue

    async def duplicated_extension(request: EnrollmentRequest, decision: Any) -> Any:
        issued = await issue(request, decision)
        cert = asn1_x509.Certificate.load(issued.der)
        extensions = list(cert["tbs_certificate"]["extensions"])
        cert["tbs_certificate"]["extensions"] = asn1_x509.Extensions(
            [*extensions, extensions[-1]])
        return dataclasses.replace(issued, der=bytes(cert.dump(force=True)))

    async def broken_revoke(serial: str, reason: Any) -> None:
        raise RuntimeError("a backend bug")

    env.primary.issue = duplicated_extension  # type: ignore[method-assign]
    env.primary.revoke = broken_revoke  # type: ignore[method-assign]
    with pytest.raises(GatewayError) as caught:
        run(env.service.submit(env.request()))
    assert caught.value.kind is ErrorKind.BACKEND_REJECTED
    assert env.count(CertificateRow) == 0
    with database.session() as session:
        event = session.scalars(select(AuditEventRow).where(
            AuditEventRow.action == "backend.policy_violation")).one()
    assert event.reason.startswith("the certificate cannot be read")
    assert event.details["revoked"].startswith("no: unexpected error")
    assert "revoking a certificate outside the decision failed" in [
        r.getMessage() for r in caplog.records if r.exc_info]


def test_fallback_backend_takes_over(database: Database) -> None:
    env = Env(database, default=ProfileConfig(backend="primary", fallback_backend="secondary"))
    env.primary.mode = "down"
    result = run(env.service.submit(env.request()))
    assert result.state is RequestState.ISSUED and result.certificate
    assert result.certificate.backend == "secondary"
    assert env.row(result.request_id).backend == "secondary"


def test_retries_run_out(database: Database) -> None:
    env = Env(database)
    env.primary.mode = "down"
    result = run(env.service.submit(env.request()))
    for _ in range(3):
        env.clock.advance(dt.timedelta(minutes=10))
        run(env.service.retry_due())
    row = env.row(result.request_id)
    assert row.state == "failed" and "unavailable after 3 attempts" in row.reason


def test_backend_rejection_fails_with_reason(database: Database) -> None:
    env = Env(database)
    env.primary.mode = "reject"
    with pytest.raises(GatewayError) as caught:
        run(env.service.submit(env.request()))
    assert caught.value.kind is ErrorKind.BACKEND_REJECTED
    assert "template not allowed" in caught.value.detail


def test_pending_backend_is_polled(database: Database) -> None:
    env = Env(database)
    env.primary.mode = "pending"
    result = run(env.service.submit(env.request(transaction_id="tx-p")))
    assert result.state is RequestState.PENDING
    env.clock.advance(dt.timedelta(seconds=5))
    run(env.service.retry_due())
    assert env.row(result.request_id).state == "pending" and env.primary.polls == 1
    env.primary.pending_ready = True
    env.clock.advance(dt.timedelta(seconds=5))
    done = run(env.service.submit(env.request(transaction_id="tx-p")))
    assert done.state is RequestState.ISSUED and done.certificate


def test_request_left_by_a_crash_is_completed(database: Database) -> None:
    """A worker died after persisting (lease still set): once the lease ends, it completes."""
    env = Env(database)
    request = env.request()
    with database.session() as session:
        requests.insert(session, request, request_id="crashed-1", now=NOW,
                        lease_until=NOW + dt.timedelta(seconds=60))
    assert run(env.service.retry_due()) == 0  # the dead worker's lease still holds
    env.clock.advance(dt.timedelta(seconds=61))
    assert run(env.service.retry_due()) == 1
    assert env.row("crashed-1").state == "issued"


def test_lease_prevents_double_drive(database: Database) -> None:
    with database.session() as session:
        requests.insert(session, Env(database).request(), request_id="r1", now=NOW,
                        lease_until=None)
    with database.session() as session:
        first = requests.claim(session, "r1", now=NOW, lease_until=NOW + dt.timedelta(minutes=1),
                               states=(RequestState.RECEIVED,))
    with database.session() as session:
        second = requests.claim(session, "r1", now=NOW, lease_until=NOW + dt.timedelta(minutes=1),
                                states=(RequestState.RECEIVED,))
    assert first is True and second is False


def test_rate_limit_per_principal(database: Database) -> None:
    env = Env(database, default=ProfileConfig(
        backend="primary", rate_limit=RateLimit(requests=2, window=dt.timedelta(hours=1))))
    run(env.service.submit(env.request(principal="bob")))
    run(env.service.submit(env.request(principal="bob")))
    with pytest.raises(GatewayError) as caught:
        run(env.service.submit(env.request(principal="bob")))
    assert caught.value.kind is ErrorKind.RATE_LIMITED
    # Another principal is not affected.
    assert run(env.service.submit(env.request(principal="carol"))).certificate


def test_renewal_links_certificates_and_refuses_revoked(database: Database) -> None:
    env = Env(database)
    # Enrolled with a password; renewed with the certificate (EST simplereenroll).
    first = run(env.service.submit(env.request()))
    assert first.certificate
    renewed = run(env.service.submit(env.request(
        operation=Operation.RENEW, renewal_of=first.certificate.serial,
        kind=PrincipalKind.CLIENT_CERT)))
    assert renewed.certificate
    with database.session() as session:
        old = certificates.get(session, first.certificate.serial)
        new = certificates.get(session, renewed.certificate.serial)
        assert old and new
        assert new.replaces_serial == old.serial and old.replaced_by_serial == new.serial
        from gateway.model import RevocationReason

        certificates.mark_revoked(session, new, reason=RevocationReason.KEY_COMPROMISE,
                                  requested_by="t", state="done", detail="", now=NOW)
    with pytest.raises(GatewayError) as caught:
        run(env.service.submit(env.request(operation=Operation.RENEW,
                                           renewal_of=renewed.certificate.serial,
                                           kind=PrincipalKind.CLIENT_CERT)))
    assert caught.value.kind is ErrorKind.FORBIDDEN and "revoked" in caught.value.detail


def test_renewal_must_keep_names(database: Database) -> None:
    env = Env(database)
    first = run(env.service.submit(env.request()))
    assert first.certificate
    with pytest.raises(GatewayError) as caught:
        run(env.service.submit(env.request(operation=Operation.RENEW,
                                           renewal_of=first.certificate.serial,
                                           dns=("other.example.test",))))
    assert caught.value.kind is ErrorKind.POLICY_DENIED
