"""The SCEP challenge port (RFC 8894 §2.3): one-time challenges, spent at most once per
transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from gateway.auth import challenges
from gateway.clock import Clock
from gateway.errors import ErrorKind, GatewayError
from gateway.model import Principal
from gateway.model import Protocol as WireProtocol
from gateway.store import requests
from gateway.store.db import Database


@dataclass(frozen=True, slots=True)
class Admission:
    """Either the request this transaction already created (nothing was spent), or the
    principal of the challenge just consumed for a new request."""

    request_id: str | None = None
    principal: Principal | None = None


class Challenges(Protocol):
    def admit(self, *, protocol: WireProtocol, transaction_id: str, profile: str,
              csr: x509.CertificateSigningRequest, secret: str | None) -> Admission:
        """The existing request of ``transaction_id``, else consume ``secret`` for
        ``csr``'s names; raises GatewayError(UNAUTHORIZED) when it cannot be used."""

    def consume(self, *, profile: str, csr: x509.CertificateSigningRequest,
                secret: str) -> Principal:
        """Consume one use of a dynamic challenge for ``csr``'s names."""


class StoreChallenges:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def admit(self, *, protocol: WireProtocol, transaction_id: str, profile: str,
              csr: x509.CertificateSigningRequest, secret: str | None) -> Admission:
        with self._db.session() as session:
            # One session: a repeated message must not spend the challenge again.
            row = requests.by_transaction(session, protocol.value, transaction_id)
            if row is not None:
                return Admission(request_id=row.id)
            if not secret:
                raise GatewayError(ErrorKind.UNAUTHORIZED, "the CSR has no challengePassword")
            return Admission(principal=challenges.consume_challenge(
                session, profile=profile, secret=secret, names=challenges.csr_names(csr),
                now=self._clock.now()))

    def consume(self, *, profile: str, csr: x509.CertificateSigningRequest,
                secret: str) -> Principal:
        with self._db.session() as session:
            return challenges.consume_challenge(
                session, profile=profile, secret=secret, names=challenges.csr_names(csr),
                now=self._clock.now())
