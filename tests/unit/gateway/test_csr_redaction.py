"""Stored CSRs keep no challengePassword (docs/security.md, rule 8), and requests that
wait still reach a CA that verifies the signed original."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.backends import Backends
from gateway.config import ProfileConfig, RetryConfig
from gateway.csr_redaction import has_challenge, redact_challenge
from gateway.enrollment import EnrollmentService
from gateway.model import (
    Decision,
    EnrollmentRequest,
    IssuedCertificate,
    Operation,
    Pending,
    Principal,
    PrincipalKind,
    Protocol,
    RequestState,
)
from gateway.policy import PolicyEngine
from gateway.store import requests
from gateway.store.db import Database
from tests.support.fakes import FakeBackend
from tests.unit.gateway.test_enrollment import Env
from tests.unit.protocols.scep.client import csr_with_challenge

SECRET = "challenge-secret-0123456789"


class VerifyingBackend(FakeBackend):
    """Like Vault or ADCS: refuses a CSR whose signature does not verify."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.signatures: list[bool] = []

    async def issue(self, request: EnrollmentRequest,
                    decision: Decision) -> IssuedCertificate | Pending:
        self.signatures.append(request.csr.is_signature_valid)
        assert request.csr.is_signature_valid, "the CA verifies the CSR's signature"
        return await super().issue(request, decision)


def _scep_request(cn: str = "dev1") -> EnrollmentRequest:
    der = csr_with_challenge(ec.generate_private_key(ec.SECP256R1()), cn, SECRET)
    return EnrollmentRequest(
        protocol=Protocol.SCEP, operation=Operation.ENROLL,
        profile="default", csr=x509.load_der_x509_csr(der), csr_der=der,
        principal=Principal(PrincipalKind.SCEP_CHALLENGE, "c1"), transaction_id=f"t-{cn}")


def _env(database: Database, **profile: Any) -> tuple[Env, VerifyingBackend]:
    env = Env(database)
    backend = VerifyingBackend("primary")
    env.service = EnrollmentService(
        database, PolicyEngine({"default": ProfileConfig(backend="primary", **profile)}),
        Backends({"primary": backend}), env.clock,
        RetryConfig(max_attempts=3, base_delay=dt.timedelta(seconds=10),
                    max_delay=dt.timedelta(minutes=5)))
    return env, backend


def test_redaction_removes_only_the_challenge() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = csr_with_challenge(key, "dev1", SECRET)
    redacted = redact_challenge(der)
    assert redacted is not None and SECRET.encode() not in redacted
    original, stored = x509.load_der_x509_csr(der), x509.load_der_x509_csr(redacted)
    assert stored.subject == original.subject and stored.public_key() == original.public_key()
    assert list(stored.attributes) == [] and not stored.is_signature_valid
    assert redact_challenge(redacted) is None and has_challenge(der) and not has_challenge(b"x")


def test_issued_at_once_stores_no_challenge(database: Database) -> None:
    env, backend = _env(database)
    result = asyncio.run(env.service.submit(_scep_request()))
    assert result.state is RequestState.ISSUED and backend.signatures == [True]
    row = env.row(result.request_id)
    assert SECRET.encode() not in row.csr_der and row.csr_verified_at_receipt


def test_held_request_keeps_the_signed_csr_until_final(database: Database) -> None:
    env, backend = _env(database, approval="manual")
    result = asyncio.run(env.service.submit(_scep_request()))
    assert result.state is RequestState.HELD
    assert SECRET.encode() in env.row(result.request_id).csr_der  # what the CA will verify
    approved = asyncio.run(env.service.approve(result.request_id, by="admin:ops"))
    assert approved.state is RequestState.ISSUED and backend.signatures == [True]
    assert SECRET.encode() not in env.row(result.request_id).csr_der


def test_denied_held_request_is_redacted(database: Database) -> None:
    env, _backend = _env(database, approval="manual")
    result = asyncio.run(env.service.submit(_scep_request()))
    env.service.deny(result.request_id, by="admin:ops", reason="no")
    assert SECRET.encode() not in env.row(result.request_id).csr_der


def test_a_redacted_request_is_trusted_for_its_receipt_check(database: Database) -> None:
    """A request persisted (redacted) and never driven, e.g. the process died: the retry
    worker decides it from the recorded check, not from the redacted CSR's signature."""
    env = Env(database)
    request = _scep_request("crashed")
    with database.begin() as session:
        requests.insert(session, request, request_id="r-crash", now=env.clock.now(),
                        lease_until=None)
    row = env.row("r-crash")
    assert row.csr_verified_at_receipt and SECRET.encode() not in row.csr_der
    env.clock.advance(dt.timedelta(seconds=1))
    asyncio.run(env.service.retry_due())
    assert env.row("r-crash").state == RequestState.ISSUED
