"""Challenges (RFC 8555 §7.5.1) and the validation worker that runs them off the request path.

A client's POST marks the challenge ``processing`` and starts validation on this process's
loop; the state (attempts, next attempt, lease) is in the database, so the sweep loop of
any worker or instance picks up a validation whose process died.  Each attempt has a
timeout; failures are retried ``validation_attempts`` times, ``validation_retry_delay`` apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from gateway.model import Identifier, IdentifierType
from gateway.services.acme_model import (
    AuthorizationStatus,
    ChallengeStatus,
    ValidationJob,
    ValidationResult,
)
from protocols.acme import addresses, http01, validators
from protocols.acme.jws import key_authorization
from protocols.acme.problems import AcmeProblem, ProblemType, malformed, not_found
from protocols.acme.resources import challenge_json, order_transition
from protocols.acme.service import AcmeService, Directory, Reply, Signed, check_owner

log = logging.getLogger("gatehouse.acme")
SWEEP_INTERVAL = 1.0
# Failures a retry cannot cure: CAA forbids us, or the name points at a non-public address.
_FINAL = frozenset({ProblemType.CAA, ProblemType.REJECTED_IDENTIFIER})
NONCE_PURGE_EVERY = 60  # sweeps


def respond(service: AcmeService, validator: Validator, directory: Directory, signed: Signed,
            challenge_id: str) -> Reply:
    account = signed.account
    if account is None:
        raise malformed("challenges must be signed with the account key ('kid')")
    if not signed.jws.post_as_get and signed.jws.payload_json() != {}:
        raise malformed("a challenge response payload must be an empty object {}")
    now = service.now()
    start = False
    detail = service.state.challenge(challenge_id)
    if detail is None:
        raise not_found("challenge")
    challenge, authz = detail.challenge, detail.authorization
    check_owner(authz.account_id, account, "challenge")
    if not signed.jws.post_as_get and challenge.status is ChallengeStatus.PENDING:
        if authz.status is not AuthorizationStatus.PENDING:
            raise AcmeProblem(ProblemType.MALFORMED, f"the authorization is {authz.status}", 400)
        if authz.expires <= now:
            raise AcmeProblem(ProblemType.MALFORMED, "the authorization has expired", 400)
        started = service.state.start_challenge(challenge_id, now=now)
        if started is not None:
            challenge, start = started, True
        else:  # another request started it meanwhile: show it as it is
            again = service.state.challenge(challenge_id)
            challenge = again.challenge if again is not None else challenge
    body = challenge_json(directory, challenge)
    up = directory.url("authz", authz.id)
    if start:
        validator.kick(challenge_id)
    retry = 1 if challenge.status is ChallengeStatus.PROCESSING else None  # lego polls after Retry-After
    return Reply(body, links=[f'<{up}>;rel="up"'], retry_after=retry)


class Validator:
    """Runs validations as tasks on the server's loop; state lives in the database."""

    def __init__(self, service: AcmeService) -> None:
        self._service = service
        self._running: set[asyncio.Task[None]] = set()
        settings = service.server
        self._network = validators.Network(settings.http01_port, settings.tlsalpn01_port,
                                           settings.dns_resolver,
                                           settings.validation_timeout.total_seconds(),
                                           addresses.parse_allow(settings.validation_allow))

    def kick(self, challenge_id: str) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self.run(challenge_id))
        except RuntimeError:
            return  # no loop (a CLI); the sweep of a server picks it up
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def sweep_forever(self) -> None:
        sweeps = 0
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            sweeps += 1
            now = self._service.now()
            due = self._service.state.due_challenges(now=now)
            if sweeps % NONCE_PURGE_EVERY == 0:
                self._service.state.purge_nonces(now=now)
            for challenge_id in due:
                self.kick(challenge_id)

    async def run(self, challenge_id: str) -> None:
        """One validation attempt, under a lease; records success, retry or failure."""
        service = self._service
        now = service.now()
        timeout = self._network.timeout
        claimed = service.state.claim_validation(
            challenge_id, now=now, lease_until=now + dt.timedelta(seconds=timeout * 2 + 5))
        if claimed is None:
            return
        job = _job(claimed)
        failure: validators.ValidationFailed | None = None
        try:
            await asyncio.wait_for(self._check(job), timeout)
        except validators.ValidationFailed as exc:
            failure = exc
        except TimeoutError:
            failure = validators.ValidationFailed(ProblemType.CONNECTION,
                                                  f"validation timed out after {timeout:g}s")
        except AcmeProblem as exc:
            failure = validators.ValidationFailed(exc.type, exc.detail)
        self._record(job, failure)

    async def _check(self, job: Job) -> None:
        if job.kind == "http-01":
            await http01.http01(self._network, job.identifier, job.token, job.key_auth)
        elif job.kind == "dns-01":
            await validators.dns01(self._network, job.identifier, job.key_auth)
        elif job.kind == "tls-alpn-01":
            await validators.tlsalpn01(self._network, job.identifier, job.key_auth)
        else:
            raise validators.ValidationFailed(ProblemType.MALFORMED, f"unknown challenge {job.kind}")
        settings = self._service.gateway.config.profiles[job.profile].acme
        if settings.caa:
            await validators.check_caa(self._network, job.identifier, settings.caa_identities)

    def _record(self, job: Job, failure: validators.ValidationFailed | None) -> None:
        service = self._service
        now = service.now()
        settings = service.server
        attempts = job.attempts + 1
        if failure is not None and failure.problem not in _FINAL \
                and attempts < settings.validation_attempts:
            service.state.retry_validation(job.challenge_id, attempts=attempts,
                                           detail=failure.detail,
                                           next_attempt_at=now + settings.validation_retry_delay)
            return
        service.state.finish_validation(ValidationResult(
            challenge_id=job.challenge_id, authorization_id=job.authz_id,
            account_id=job.account_id, profile=job.profile, kind=job.kind,
            identifier=str(job.identifier), attempts=attempts,
            error=_problem(failure, job.identifier) if failure is not None else None,
            reason=failure.detail if failure else ""), now=now)
        # The order follows its authorizations (RFC 8555 §7.1.6); a reader of the order
        # applies the same rule, so a crash between the two loses nothing.
        state = service.state.order_state(job.order_id)
        if state is not None:
            change = order_transition(state.order.status, state.order.expires,
                                      state.authorizations, now)
            if change is not None:
                service.state.apply_order_change(job.order_id, expected=state.order.status,
                                                 change=change, now=now)


@dataclass(frozen=True, slots=True)
class Job:
    """What one validation attempt needs, read under the lease."""

    challenge_id: str
    authz_id: str
    order_id: str
    account_id: str
    kind: str
    identifier: Identifier
    token: str
    key_auth: str
    profile: str
    attempts: int


def _problem(failure: validators.ValidationFailed, identifier: Identifier) -> dict[str, Any]:
    status = 403 if failure.problem in (ProblemType.UNAUTHORIZED, ProblemType.CAA) else 400
    return {"type": failure.problem.urn, "detail": failure.detail, "status": status,
            "identifier": {"type": identifier.type.value,
                           "value": identifier.value.removeprefix("*.")}}


def _job(claimed: ValidationJob) -> Job:
    challenge, authz = claimed.challenge, claimed.authorization
    value = authz.identifier_value
    if authz.wildcard:
        value = "*." + value
    identifier = Identifier(IdentifierType(authz.identifier_type), value)
    return Job(challenge.id, authz.id, claimed.order.id, claimed.account.id, challenge.type,
               identifier, challenge.token,
               key_authorization(challenge.token, dict(claimed.account.jwk)),
               claimed.order.profile, challenge.attempts)
