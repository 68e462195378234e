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

from sqlalchemy import Connection

from gateway.model import Identifier, IdentifierType
from gateway.store import acme as store
from gateway.store import audit
from protocols.acme import addresses, http01, validators
from protocols.acme.jws import key_authorization
from protocols.acme.problems import AcmeProblem, ProblemType, malformed, not_found, unauthorized
from protocols.acme.resources import challenge_json, order_transition
from protocols.acme.service import AcmeService, Directory, Reply, Signed

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
    with service.gateway.db.begin() as connection:
        challenge = store.fast_challenge(connection, challenge_id)
        if challenge is None:
            raise not_found("challenge")
        authz = store.fast_authorization(connection, challenge.authorization_id)
        assert authz is not None
        if authz.account_id != account.id:
            raise unauthorized("the challenge belongs to another account")
        if not signed.jws.post_as_get and challenge.status == "pending":
            if authz.status != "pending":
                raise AcmeProblem(ProblemType.MALFORMED, f"the authorization is {authz.status}", 400)
            if authz.expires <= now:
                raise AcmeProblem(ProblemType.MALFORMED, "the authorization has expired", 400)
            store.fast_update(connection, "challenge", challenge_id, status="processing",
                              next_attempt_at=now)
            challenge = store.fast_challenge(connection, challenge_id)
            start = True
        body = challenge_json(directory, challenge)
        up = directory.url("authz", authz.id)
    if start:
        validator.kick(challenge_id)
    retry = 1 if body["status"] == "processing" else None  # lego polls after Retry-After
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
            with self._service.gateway.db.session() as session:
                due = store.due_challenges(session, now=now)
                if sweeps % NONCE_PURGE_EVERY == 0:
                    store.purge_nonces(session, now=now)
            for challenge_id in due:
                self.kick(challenge_id)

    async def run(self, challenge_id: str) -> None:
        """One validation attempt, under a lease; records success, retry or failure."""
        service = self._service
        now = service.now()
        timeout = self._network.timeout
        with service.gateway.db.begin() as connection:
            if not store.fast_claim_challenge(connection, challenge_id, now=now,
                                              lease_until=now + dt.timedelta(seconds=timeout * 2 + 5)):
                return
            job = _job(connection, challenge_id)
        if job is None:
            return
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
        with service.gateway.db.begin() as connection:
            if failure is None:
                store.fast_update(connection, "challenge", job.challenge_id, status="valid",
                                  validated=now, error=None, lease_until=None, attempts=attempts)
                store.fast_update(connection, "authz", job.authz_id, status="valid")
            elif failure.problem not in _FINAL and attempts < settings.validation_attempts:
                store.fast_update(connection, "challenge", job.challenge_id, lease_until=None,
                                  attempts=attempts, detail=failure.detail,
                                  next_attempt_at=now + settings.validation_retry_delay)
                return
            else:
                store.fast_update(connection, "challenge", job.challenge_id, status="invalid",
                                  next_attempt_at=None, lease_until=None, attempts=attempts,
                                  error=_problem(failure, job.identifier))
                store.fast_update(connection, "authz", job.authz_id, status="invalid")
            order = store.fast_order(connection, job.order_id)
            if order is not None:
                states = store.fast_authz_states(connection, job.order_id)
                change = order_transition(order.status, order.expires, states, now)
                if change is not None:
                    store.fast_update(connection, "order", job.order_id, status=change[0],
                                      error=change[1], updated_at=now)
            audit.record(connection, at=now, actor=f"acme-account:{job.account_id}",
                         action="acme.validation", outcome="invalid" if failure else "valid",
                         profile=job.profile, reason=failure.detail if failure else "",
                         challenge=job.kind, identifier=str(job.identifier))


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


def _job(connection: Connection, challenge_id: str) -> Job | None:
    challenge = store.fast_challenge(connection, challenge_id)
    if challenge is None:
        return None
    authz = store.fast_authorization(connection, challenge.authorization_id)
    order = store.fast_order(connection, authz.order_id) if authz else None
    account = store.fast_account(connection, authz.account_id) if authz else None
    if authz is None or order is None or account is None:
        return None
    value = authz.identifier_value
    if authz.wildcard:
        value = "*." + value
    identifier = Identifier(IdentifierType(authz.identifier_type), value)
    return Job(challenge.id, authz.id, order.id, account.id, challenge.type, identifier,
               challenge.token, key_authorization(challenge.token, account.jwk), order.profile,
               challenge.attempts)
