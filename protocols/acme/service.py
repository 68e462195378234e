"""The ACME front end's shared machinery: settings, URLs, request authentication, replies.

Every POST is authenticated the same way (RFC 8555 §6.2-§6.5): content type, JWS
structure, ``url`` equal to the request URL, the key (``jwk`` for newAccount and
revokeCert, else the account named by ``kid``), the signature, then the nonce, which
is consumed in the database so no worker or instance accepts it twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from gateway.config import ProfileConfig
from gateway.protocol_settings.acme import AcmeProfileSettings, AcmeServerSettings
from gateway.runtime import Gateway
from gateway.services.acme import AcmeState
from gateway.services.acme_model import Account, AccountStatus
from protocols.acme import jws
from protocols.acme.problems import AcmeProblem, ProblemType, malformed, not_found, unauthorized

JOSE = "application/jose+json"


@dataclass
class Reply:
    body: dict[str, Any] | bytes | None = None
    status: int = 200
    location: str | None = None
    links: list[str] = field(default_factory=list)
    retry_after: int | None = None
    content_type: str = "application/json"
    nonce: str | None = None


@dataclass(frozen=True, slots=True)
class Signed:
    """An authenticated request: its JWS and, for kid requests, the account."""

    jws: jws.ParsedJws
    account: Account | None
    nonce: str  # the fresh nonce for the reply


@dataclass(frozen=True, slots=True)
class Directory:
    """One ACME directory: a Gatehouse profile offered over ACME, and its base URL."""

    profile: str
    base: str  # https://host:port/acme/<profile>
    directory_url: str
    config: ProfileConfig

    @property
    def settings(self) -> AcmeProfileSettings:
        return self.config.acme

    def url(self, *parts: str) -> str:
        return "/".join((self.base, *parts))

    def account_url(self, account_id: str) -> str:
        return self.url("acct", account_id)


class AcmeService:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.state: AcmeState = gateway.acme  # the only way to ACME state
        self.server: AcmeServerSettings = gateway.config.acme

    def now(self) -> dt.datetime:
        return self.gateway.clock.now()

    def directory(self, request: Request, profile: str) -> Directory:
        config = self.gateway.config.profiles.get(profile)
        if config is None or not config.acme.enabled:
            raise not_found("ACME directory")
        origin = str(request.base_url).rstrip("/")
        base = f"{origin}/acme/{profile}"
        directory_url = (f"{origin}/acme/directory" if profile == self.gateway.config.default_profile
                         else f"{base}/directory")
        return Directory(profile, base, directory_url, config)

    def new_nonce(self) -> str:
        return self.state.issue_nonce(now=self.now(), lifetime=self.server.nonce_lifetime)

    async def authenticate(self, request: Request, directory: Directory, *,
                           use_jwk: bool = False, either: bool = False) -> Signed:
        """Check everything RFC 8555 §6.2 asks of a POST; consume the nonce."""
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != JOSE:
            raise AcmeProblem(ProblemType.MALFORMED,
                              f"the Content-Type must be {JOSE}", 415)
        body = await request.body()
        parsed = jws.parse(body)
        if parsed.url != str(request.url):
            raise unauthorized("the JWS 'url' does not match the request URL")
        now = self.now()
        account = None
        if parsed.jwk is not None:
            if not (use_jwk or either):
                raise malformed("this request must be signed with the account key ('kid')")
            key = jws.load_jwk(parsed.jwk)
        else:
            if use_jwk:
                raise malformed("this request must carry the public key ('jwk')")
            account = self._account_for_kid(directory, str(parsed.kid))
            key = jws.load_jwk(dict(account.jwk))
        jws.verify(parsed, key)
        assert parsed.nonce is not None
        # Consumed only once everything else verified, as before: a refused request
        # leaves its nonce usable.
        fresh = self.state.exchange_nonce(parsed.nonce, now=now,
                                          lifetime=self.server.nonce_lifetime)
        if fresh is None:
            raise AcmeProblem(ProblemType.BAD_NONCE, "the nonce is unknown, used or expired")
        return Signed(parsed, account, fresh)

    def _account_for_kid(self, directory: Directory, kid: str) -> Account:
        prefix = directory.url("acct", "")
        if not kid.startswith(prefix):
            raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST,
                              "the 'kid' is not an account URL of this directory", 400)
        account = self.state.account(kid.removeprefix(prefix))
        if account is None or account.profile != directory.profile:
            raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no such account", 400)
        if account.status is not AccountStatus.VALID:
            raise unauthorized(f"the account is {account.status}")
        return account


def check_owner(owner_id: str, account: Account, what: str) -> None:
    """RFC 8555 §7.4-§7.5: an account sees and changes only its own orders, authorizations
    and challenges."""
    if owner_id != account.id:
        raise unauthorized(f"the {what} belongs to another account")
