"""The one enrollment pipeline: receive → persist → decide → issue → record → answer.

Protocol-agnostic.  A request is committed to the database (state ``received``) before
the policy engine or a backend can fail, and every later step is a committed state
change, so a crash or a dead backend leaves it where the retry worker (or the client's
next poll) picks it up.  Each request is driven by whoever holds its lease, a
conditional UPDATE, so many workers and instances can share one database.

Submission is idempotent on (protocol, transaction id): a client that repeats a request
gets the same request back, in whatever state it reached.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ca_backends.base import BackendRejected, BackendUnavailable, RevocationSigner
from gateway import codec, metrics
from gateway.backends import Backends
from gateway.clock import Clock
from gateway.config import RetryConfig
from gateway.errors import ErrorKind, GatewayError, ca_refusal
from gateway.issuance_check import BackendPolicyViolation, check_issued
from gateway.model import (
    Decision,
    EnrollmentRequest,
    EnrollmentResult,
    IssuedCertificate,
    Operation,
    Outcome,
    Pending,
    RevocationReason,
)
from gateway.model import RequestState as S
from gateway.policy import Explanation, Facts, PolicyEngine
from gateway.request_records import (
    Known,
    RequestView,
    actor,
    must,
    renewal_context,
    request_of,
    result_of,
    view,
)
from gateway.store import audit, certificates, requests
from gateway.store.db import Database
from gateway.store.tables import RequestRow

log = logging.getLogger("gatehouse.enrollment")

T = TypeVar("T")

_DRIVABLE = (S.RECEIVED, S.SUBMITTED, S.PENDING)
_INTERNAL_FAILURE = "internal error while processing the request"


class EnrollmentService:
    """Drives enrollment requests through their state machine."""

    def __init__(self, db: Database, policy: PolicyEngine, backends: Backends, clock: Clock,
                 retry: RetryConfig) -> None:
        self._db = db
        self._policy = policy
        self._backends = backends
        self._clock = clock
        self._retry = retry

    # -- entry points ------------------------------------------------------------------

    async def submit(self, request: EnrollmentRequest) -> EnrollmentResult:
        """Persist and drive a new request; repeat submissions resume the first one.

        Returns the result for issued, held, pending and retrying requests; raises
        GatewayError for denials and for requests that failed for good.
        """
        started = time.perf_counter()
        try:
            result = await self._submit(request)
        except GatewayError as exc:
            metrics.enrollment_done(request.protocol.value, request.profile, exc.kind.value,
                                    started)
            raise
        metrics.enrollment_done(request.protocol.value, request.profile, result.state.value,
                                started)
        return result

    async def _submit(self, request: EnrollmentRequest) -> EnrollmentResult:
        if self._policy.profile(request.profile) is None:
            raise GatewayError(ErrorKind.UNKNOWN_PROFILE, f"unknown profile {request.profile!r}")
        now = self._clock.now()
        request_id = requests.new_request_id()
        try:
            with self._db.begin() as session:
                requests.insert(session, request, request_id=request_id, now=now,
                                lease_until=now + self._retry.lease)
                actor = f"{request.principal.kind}:{request.principal.id}"
                audit.record(session, at=now, actor=actor, action="request.received",
                             outcome="ok", request_id=request_id, profile=request.profile,
                             protocol=request.protocol.value, operation=request.operation.value)
        except IntegrityError:
            # The same (protocol, transaction id) exists: the client is asking again.
            existing = self._find_transaction(request) if request.transaction_id else None
            if existing is None:
                raise
            return await self.resume(existing)
        return await self._failing_alone(request_id, self._drive_new(request_id, request))

    async def _failing_alone(self, request_id: str,
                             drive: Coroutine[Any, Any, EnrollmentResult]) -> EnrollmentResult:
        """Drive one request; a bug the policy or a backend hits on it fails that request
        alone, recorded with a generic reason (the traceback goes to the log once), and the
        caller gets INTERNAL, never an unhandled exception: a client waiting on it gets its
        protocol's server error at once, and the retry worker goes on with the others.  A
        database error is not this request's fault and propagates (the next tick retries).
        """
        try:
            return await drive
        except (GatewayError, SQLAlchemyError):
            raise
        except Exception as exc:  # the pipeline's one catch-all per request
            log.exception("request failed unexpectedly", extra={"request_id": request_id})
            self._fail(request_id, _INTERNAL_FAILURE)
            raise GatewayError(ErrorKind.INTERNAL, _INTERNAL_FAILURE) from exc

    async def _drive_new(self, request_id: str, request: EnrollmentRequest) -> EnrollmentResult:
        """The fast path for a request this worker just persisted and holds the lease on.

        Decides and issues from memory, then writes the outcome in one transaction.  If the
        process dies before that, the row is still ``received`` with a lease that runs out,
        and the retry worker decides and issues it again.
        """
        released = False
        try:
            explanation = self._policy.decide(request, self._facts(request))
            decision = explanation.decision
            if decision.outcome is not Outcome.APPROVED:
                self._store_decision(request_id, explanation)
                return self.result(request_id)
            outcome, backend_name, failure = await self._call_backends(request, decision,
                                                                       request_id=request_id)
            if isinstance(outcome, IssuedCertificate):
                stored = codec.decision_to_json(decision, None)
                self._record(request_id, outcome, backend_name=backend_name, decision=stored,
                             request=request)
                released = True  # _record cleared the lease in the same transaction
                return EnrollmentResult(request_id, S.ISSUED, certificate=outcome)
            self._store_decision(request_id, explanation)
            self._after_backend(request_id, outcome, backend_name, failure, attempts=0)
            return self.result(request_id)
        finally:
            if not released:
                self._release(request_id, request)

    def _facts(self, request: EnrollmentRequest) -> Facts:
        """What the policy needs from the database, looked up only when it asks."""
        def recent(since: dt.datetime) -> int:
            with self._db.session() as session:
                return requests.count_since(session, principal_id=request.principal.id,
                                            profile=request.profile, since=since)

        renewal = None
        if request.operation in (Operation.RENEW, Operation.REKEY):
            with self._db.session() as session:
                renewal = renewal_context(session, request)
        return Facts(now=self._clock.now(), recent_requests=recent, renewal=renewal)

    async def resume(self, request_id: str) -> EnrollmentResult:
        """Answer a client asking again: drive the request on if it is due, else report."""
        with self._db.session() as session:
            row = requests.get(session, request_id)
            if row is None:
                raise GatewayError(ErrorKind.NOT_FOUND, "no such request")
            state = S(row.state)
            due = row.next_attempt_at is None or row.next_attempt_at <= self._clock.now()
        if state in _DRIVABLE and due:
            return await self._failing_alone(request_id, self._drive(request_id, leased=False))
        return self.result(request_id)

    def result(self, request_id: str) -> EnrollmentResult:
        """The request's outcome as it stands; raises for denied and failed requests."""
        with self._db.session() as session:
            row = requests.get(session, request_id)
            if row is None:
                raise GatewayError(ErrorKind.NOT_FOUND, "no such request")
            return result_of(session, row, self._clock.now())

    async def approve(self, request_id: str, *, by: str) -> EnrollmentResult:
        now = self._clock.now()
        with self._db.session() as session:
            row = requests.get(session, request_id)
            if row is None:
                raise GatewayError(ErrorKind.NOT_FOUND, "no such request")
            if row.state != S.HELD:
                raise GatewayError(ErrorKind.CONFLICT, f"request is {row.state}, not held")
            decision = dict(row.decision or {})
            decision["outcome"] = Outcome.APPROVED.value
            decision["reason"] = f"approved by {by}"
            requests.set_state(row, S.SUBMITTED, now=now, reason=f"approved by {by}",
                               decision=decision, decided_by=by, next_attempt_at=now,
                               lease_until=None)
            audit.record(session, at=now, actor=by, action="request.approved", outcome="ok",
                         request_id=request_id, profile=row.profile)
        return await self._failing_alone(request_id, self._drive(request_id, leased=False))

    def deny(self, request_id: str, *, by: str, reason: str) -> None:
        now = self._clock.now()
        with self._db.session() as session:
            row = requests.get(session, request_id)
            if row is None:
                raise GatewayError(ErrorKind.NOT_FOUND, "no such request")
            if row.state not in (S.HELD, S.RECEIVED, S.SUBMITTED, S.PENDING):
                raise GatewayError(ErrorKind.CONFLICT, f"request is {row.state}")
            decision = dict(row.decision or {})
            decision["outcome"] = Outcome.DENIED.value
            decision["denial_kind"] = ErrorKind.POLICY_DENIED.value
            requests.set_state(row, S.DENIED, now=now, reason=reason or f"denied by {by}",
                               decision=decision, decided_by=by, lease_until=None,
                               next_attempt_at=None)
            requests.redact_final(row)
            audit.record(session, at=now, actor=by, action="request.denied", outcome="ok",
                         request_id=request_id, profile=row.profile, reason=reason)

    async def retry_due(self, limit: int = 50) -> int:
        """Re-drive requests whose next attempt is due (the retry worker's tick)."""
        with self._db.session() as session:
            due = requests.due(session, now=self._clock.now(), limit=limit)
        driven = 0
        for request_id in due:
            try:
                await self._failing_alone(request_id, self._drive(request_id, leased=False))
            except GatewayError:
                pass  # recorded in the request's state; nothing to answer here
            driven += 1
        return driven

    def list_requests(self, where: requests.RequestFilter) -> list[RequestView]:
        with self._db.session() as session:
            return [view(row) for row in requests.search(session, where)]

    # -- the state machine -------------------------------------------------------------

    async def _drive(self, request_id: str, *, leased: bool) -> EnrollmentResult:
        now = self._clock.now()
        if not leased:
            with self._db.session() as session:
                if not requests.claim(session, request_id, now=now,
                                      lease_until=now + self._retry.lease, states=_DRIVABLE):
                    # Someone else drives it (or it is final): report what we know.
                    return self.result(request_id)
        try:
            state = self._decide_if_needed(request_id)
            if state is S.SUBMITTED:
                await self._issue(request_id)
            elif state is S.PENDING:
                await self._poll(request_id)
        finally:
            self._release(request_id)
        return self.result(request_id)

    def _decide_if_needed(self, request_id: str) -> S:
        with self._db.session() as session:
            row = must(requests.get(session, request_id))
            if row.state != S.RECEIVED:
                return S(row.state)
            request = request_of(row)
        return self._store_decision(request_id, self._policy.decide(request, self._facts(request)))

    def _store_decision(self, request_id: str, explanation: Explanation) -> S:
        """Write the policy's decision and the state it leads to."""
        now = self._clock.now()
        decision = explanation.decision
        stored = codec.decision_to_json(decision, explanation.denial_kind)
        with self._db.session() as session:
            row = must(requests.get(session, request_id))
            row.sans = [str(i) for i in decision.sans]
            if decision.outcome is Outcome.DENIED:
                requests.set_state(row, S.DENIED, now=now, reason=decision.reason,
                                   decision=stored, next_attempt_at=None)
                audit.record(session, at=now, actor=actor(row), action="request.denied",
                             outcome="denied", request_id=row.id, profile=row.profile,
                             reason=decision.reason)
                return S.DENIED
            if decision.outcome is Outcome.HELD:
                requests.set_state(row, S.HELD, now=now, reason=decision.reason,
                                   decision=stored, backend=decision.backend,
                                   next_attempt_at=None)
                audit.record(session, at=now, actor=actor(row), action="request.held",
                             outcome="held", request_id=row.id, profile=row.profile)
                return S.HELD
            requests.set_state(row, S.SUBMITTED, now=now, reason="", decision=stored,
                               backend=decision.backend)
            return S.SUBMITTED

    async def _issue(self, request_id: str) -> None:
        with self._db.session() as session:
            row = must(requests.get(session, request_id))
            request = request_of(row)
            decision = codec.decision_from_json(must(row.decision))
            attempts = row.attempts
        outcome, backend_name, failure = await self._call_backends(request, decision,
                                                                   request_id=request_id)
        if isinstance(outcome, IssuedCertificate):
            self._record(request_id, outcome, backend_name=backend_name)
        else:
            self._after_backend(request_id, outcome, backend_name, failure, attempts=attempts)

    async def _call_backends(
        self, request: EnrollmentRequest, decision: Decision, *, request_id: str
    ) -> tuple[IssuedCertificate | Pending | None, str, GatewayError | None]:
        """Ask the profile's backend, then its fallback; never raises for backend trouble.

        Returns (outcome, backend name, failure): outcome None means unavailable
        (failure is BackendUnavailable), rejected (failure is BackendRejected) or a
        certificate outside the decision (failure is BackendPolicyViolation).
        """
        names = [decision.backend]
        if decision.fallback_backend:
            names.append(decision.fallback_backend)
        failure: GatewayError | None = None
        for name in names:
            backend = self._backends.get(name)
            try:
                with metrics.backend_call(name):
                    outcome = await backend.issue(request, decision)
            except BackendUnavailable as exc:
                log.warning("backend unavailable", extra={"backend": name, "error": exc.detail})
                failure = exc
                continue
            except BackendRejected as exc:
                return None, name, exc
            if isinstance(outcome, IssuedCertificate):
                violation = await self._vet(request_id, request, decision, outcome, name)
                if violation is not None:
                    return None, name, violation
            return outcome, name, None
        return None, names[0], failure

    async def _vet(self, request_id: str, request: EnrollmentRequest, decision: Decision,
                   issued: IssuedCertificate, backend_name: str) -> BackendPolicyViolation | None:
        """A backend is never trusted to enforce the policy (docs/security.md, rule 4): a
        certificate outside the decision is audited, revoked where the CA can, refused."""
        profile = self._policy.profile(request.profile)
        violations = check_issued(issued, decision, request, now=self._clock.now(),
                                  max_validity=profile.validity.max if profile else None)
        if not violations:
            return None
        log.error("backend policy violation", extra={"backend": backend_name,
                                                     "request_id": request_id,
                                                     "serial": issued.serial,
                                                     "violations": violations})
        revoked = "yes"
        try:
            await self._backends.get(backend_name).revoke(issued.serial,
                                                          RevocationReason.PRIVILEGE_WITHDRAWN)
        except GatewayError as exc:  # Unsupported (ADCS web enrollment), or the CA is away
            revoked = f"no: {exc.detail}"
        except Exception:  # a backend bug must not lose the audit record below
            log.exception("revoking a certificate outside the decision failed",
                          extra={"backend": backend_name, "request_id": request_id,
                                 "serial": issued.serial})
            revoked = "no: unexpected error (see the log)"
        with self._db.session() as session:
            audit.record(session, at=self._clock.now(), actor="gatehouse",
                         action="backend.policy_violation", outcome="refused",
                         request_id=request_id, serial=issued.serial, profile=request.profile,
                         reason="; ".join(violations), backend=backend_name,
                         subject=issued.subject, revoked=revoked)
        return BackendPolicyViolation(violations)

    def _after_backend(self, request_id: str, outcome: IssuedCertificate | Pending | None,
                       backend_name: str, failure: GatewayError | None, *, attempts: int) -> None:
        """Record a pending answer, a rejection, or schedule a retry."""
        if isinstance(outcome, Pending):
            now = self._clock.now()
            with self._db.session() as session:
                row = must(requests.get(session, request_id))
                requests.set_state(row, S.PENDING, now=now, reason="pending at the CA",
                                   backend=backend_name, backend_ref=outcome.backend_ref,
                                   next_attempt_at=now + dt.timedelta(seconds=outcome.retry_after))
                audit.record(session, at=now, actor=actor(row), action="request.pending",
                             outcome="pending", request_id=request_id, profile=row.profile,
                             backend=backend_name, backend_ref=outcome.backend_ref)
        elif isinstance(failure, BackendPolicyViolation):
            self._fail(request_id, failure.detail, backend=backend_name)
        elif isinstance(failure, BackendRejected):
            self._fail(request_id, ca_refusal(failure.detail),
                       backend=backend_name)
        else:
            assert failure is not None
            self._backoff(request_id, attempts, failure)

    async def _poll(self, request_id: str) -> None:
        with self._db.session() as session:
            row = must(requests.get(session, request_id))
            name, ref, attempts = must(row.backend), must(row.backend_ref), row.attempts
            request = request_of(row)
            decision = codec.decision_from_json(must(row.decision))
        backend = self._backends.get(name)
        try:
            outcome = await backend.poll(ref)
        except BackendUnavailable as exc:
            self._backoff(request_id, attempts, exc, state=S.PENDING)
            return
        except BackendRejected as exc:
            self._fail(request_id, ca_refusal(exc.detail), backend=name)
            return
        if isinstance(outcome, IssuedCertificate):
            violation = await self._vet(request_id, request, decision, outcome, name)
            if violation is not None:
                self._fail(request_id, violation.detail, backend=name)
                return
            self._record(request_id, outcome, backend_name=name)
        else:
            now = self._clock.now()
            with self._db.session() as session:
                row = must(requests.get(session, request_id))
                row.next_attempt_at = now + dt.timedelta(seconds=outcome.retry_after)
                row.updated_at = now

    def _record(self, request_id: str, issued: IssuedCertificate, *, backend_name: str,
                decision: dict[str, object] | None = None,
                request: EnrollmentRequest | None = None) -> None:
        """Add the certificate to the inventory and mark the request issued, atomically."""
        now = self._clock.now()
        backend = self._backends.get(backend_name)
        issuer_id = None
        if isinstance(backend, RevocationSigner):
            info = backend.issuer_for(issued.certificate)
            issuer_id = info.id if info else None
        with self._db.begin() as session:
            if request is not None:  # the fast path knows the request: no read needed
                row: Any = Known(request.profile, request.protocol.value, request.principal.id,
                                  request.principal.kind.value, request.renewal_of, None)
            else:
                row = must(session.execute(
                    select(RequestRow.profile, RequestRow.protocol, RequestRow.principal_id,
                           RequestRow.principal_kind, RequestRow.renewal_of,
                           RequestRow.backend_ref)
                    .where(RequestRow.id == request_id)).first())
            certificates.add(session, issued, profile=row.profile, protocol=row.protocol,
                             request_id=request_id, principal_id=row.principal_id,
                             replaces_serial=row.renewal_of, issuer_id=issuer_id, now=now)
            values: dict[str, object] = {
                "state": S.ISSUED.value, "updated_at": now, "reason": "", "backend": backend_name,
                "certificate_serial": issued.serial, "next_attempt_at": None, "lease_until": None,
                "backend_ref": issued.backend_ref or row.backend_ref,
            }
            if decision is not None:
                values["decision"] = decision
                values["sans"] = [str(i) for i in issued.sans]
            requests.update_values(session, request_id, **values)
            audit.record(session, at=now, actor=f"{row.principal_kind}:{row.principal_id}",
                         action="certificate.issued", outcome="ok", request_id=request_id,
                         serial=issued.serial, profile=row.profile, backend=backend_name,
                         subject=issued.subject)
        metrics.certificate_issued(row.protocol, row.profile, backend_name)

    def _backoff(self, request_id: str, attempts: int, failure: GatewayError,
                 state: S = S.SUBMITTED) -> None:
        attempts += 1
        if attempts >= self._retry.max_attempts:
            self._fail(request_id, f"the CA stayed unavailable after {attempts} attempts",
                       detail=failure.detail)
            return
        delay = min(self._retry.base_delay * (2 ** (attempts - 1)), self._retry.max_delay)
        if failure.retry_after:
            delay = max(delay, dt.timedelta(seconds=failure.retry_after))
        delay = delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
        now = self._clock.now()
        with self._db.session() as session:
            row = must(requests.get(session, request_id))
            # The row's reason reaches clients; the backend's detail (URLs, hosts) only the
            # audit log (docs/security.md, rule 10).
            requests.set_state(row, state, now=now, reason="retrying: the CA is unavailable",
                               attempts=attempts, next_attempt_at=now + delay)
            audit.record(session, at=now, actor="gatehouse", action="request.retry",
                         outcome="retry", request_id=request_id, profile=row.profile,
                         reason=failure.detail, attempts=attempts)

    def _fail(self, request_id: str, reason: str, *, backend: str | None = None,
              detail: str | None = None) -> None:
        now = self._clock.now()
        with self._db.session() as session:
            row = must(requests.get(session, request_id))
            requests.set_state(row, S.FAILED, now=now, reason=reason, next_attempt_at=None,
                               lease_until=None, **({"backend": backend} if backend else {}))
            requests.redact_final(row)  # final: its CSR keeps no challenge (rule 8)
            audit.record(session, at=now, actor="gatehouse", action="request.failed",
                         outcome="failed", request_id=request_id, profile=row.profile,
                         reason=f"{reason}: {detail}" if detail else reason)

    def _release(self, request_id: str, request: EnrollmentRequest | None = None) -> None:
        """Give up the lease.  The stored CSR keeps its challengePassword only while a
        request must wait for a CA that verifies the signed original (rule 8)."""
        with self._db.session() as session:
            row = requests.get(session, request_id)
            if row is not None:
                row.lease_until = None
                if request is not None:
                    requests.keep_signed_csr(row, request)
                requests.redact_final(row)

    def _find_transaction(self, request: EnrollmentRequest) -> str | None:
        assert request.transaction_id
        with self._db.session() as session:
            row = requests.by_transaction(session, request.protocol.value, request.transaction_id)
            return row.id if row else None


__all__ = ["EnrollmentService", "RequestView"]
