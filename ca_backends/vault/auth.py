"""How the gateway authenticates to Vault / OpenBao: a token, AppRole, or a TLS certificate.

One ``VaultLogin`` per backend keeps the current client token and its lease.  A token
that expires within a third of its lease is renewed (``auth/token/renew-self``) before it
is used; a token that cannot be renewed is replaced by a fresh login (AppRole, cert) or,
for a configured token, read again from its file or environment variable (so an agent
that rotates the file is followed).  ``invalidate`` forgets the token after a 403: the
next call logs in again, once.

Vault API: ``auth/approle/login`` {role_id, secret_id}; ``auth/cert/login`` over a TLS
connection that presented the client certificate; ``auth/token/lookup-self`` and
``auth/token/renew-self`` with ``X-Vault-Token``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ca_backends.base import BackendUnavailable

RENEW_FRACTION = 1 / 3  # renew when less than this share of the lease remains


class _AuthModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _exactly_one(values: Mapping[str, str | None], what: str) -> None:
    given = [name for name, value in values.items() if value]
    if len(given) != 1:
        raise ValueError(f"{what}: set exactly one of {', '.join(values)}")


class TokenAuth(_AuthModel):
    """A token handed to the gateway (from a file an agent keeps fresh, or the environment)."""

    method: Literal["token"]
    token_file: str | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TokenAuth:
        _exactly_one({"token_file": self.token_file, "token_env": self.token_env}, "token auth")
        return self


class AppRoleAuth(_AuthModel):
    """AppRole login; the role_id is not secret, the secret_id comes from a file or env."""

    method: Literal["approle"]
    mount: str = "approle"
    role_id: str | None = None
    role_id_file: str | None = None
    secret_id_file: str | None = None
    secret_id_env: str | None = None

    @model_validator(mode="after")
    def _sources(self) -> AppRoleAuth:
        _exactly_one({"role_id": self.role_id, "role_id_file": self.role_id_file}, "approle auth")
        _exactly_one({"secret_id_file": self.secret_id_file, "secret_id_env": self.secret_id_env},
                     "approle auth")
        return self


class CertAuth(_AuthModel):
    """TLS certificate login: the client certificate is presented on every connection."""

    method: Literal["cert"]
    mount: str = "cert"
    name: str | None = None  # the cert role to log in against; None lets Vault pick
    client_cert: str
    client_key: str


VaultAuthConfig = Annotated[TokenAuth | AppRoleAuth | CertAuth, Field(discriminator="method")]


# (method, path, json body, token) -> (HTTP status, decoded JSON body)
Send = Callable[[str, str, dict[str, Any] | None, str | None], Awaitable[tuple[int, dict[str, Any]]]]


class VaultAuthError(BackendUnavailable):
    """Vault refused the gateway's credentials: the operator must fix them; requests wait."""


@dataclass
class _Lease:
    token: str
    ttl: float  # seconds; 0 = never expires (root or periodic-less static token)
    renewable: bool
    obtained: float  # time.monotonic()

    def remaining(self, now: float) -> float:
        return self.ttl - (now - self.obtained)


class VaultLogin:
    """The current client token of one backend, renewed or replaced as its lease runs out."""

    def __init__(self, config: TokenAuth | AppRoleAuth | CertAuth, data_dir: Path, send: Send,
                 *, environ: Mapping[str, str] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._data_dir = data_dir
        self._send = send
        self._environ = environ if environ is not None else os.environ
        self._monotonic = monotonic
        self._lease: _Lease | None = None
        self._lock = asyncio.Lock()
        self.logins = 0  # how many times a token was obtained (observability, tests)
        self.renewals = 0

    @property
    def method(self) -> str:
        return self._config.method

    async def token(self) -> str:
        """A token that is valid now, renewing or logging in first when needed."""
        async with self._lock:
            lease = self._lease
            now = self._monotonic()
            if lease is not None and lease.ttl > 0:
                remaining = lease.remaining(now)
                if remaining <= 0:
                    lease = None
                elif remaining < lease.ttl * RENEW_FRACTION:
                    lease = await self._renew(lease)
            if lease is None:
                lease = await self._login()
            self._lease = lease
            return lease.token

    async def invalidate(self, token: str) -> None:
        """Forget ``token`` (Vault answered 403 with it); the next ``token()`` logs in."""
        async with self._lock:
            if self._lease is not None and self._lease.token == token:
                self._lease = None

    # -- obtaining tokens ------------------------------------------------------------------

    async def _login(self) -> _Lease:
        config = self._config
        if isinstance(config, TokenAuth):
            token = self._secret(config.token_file, config.token_env, "token")
            status, body = await self._send("GET", "auth/token/lookup-self", None, token)
            if status != 200:
                raise VaultAuthError(f"Vault refused the configured token ({_reason(status, body)})")
            data = body.get("data") or {}
            lease = _Lease(token, float(data.get("ttl") or 0), bool(data.get("renewable")),
                           self._monotonic())
        else:
            if isinstance(config, AppRoleAuth):
                role_id = config.role_id or self._secret(config.role_id_file, None, "role_id")
                secret_id = self._secret(config.secret_id_file, config.secret_id_env, "secret_id")
                path, payload = f"auth/{config.mount}/login", {"role_id": role_id,
                                                               "secret_id": secret_id}
            else:
                path = f"auth/{config.mount}/login"
                payload = {"name": config.name} if config.name else {}
            status, body = await self._send("POST", path, payload, None)
            auth = body.get("auth") if status == 200 else None
            if not isinstance(auth, dict) or not auth.get("client_token"):
                raise VaultAuthError(f"Vault {config.method} login failed ({_reason(status, body)})")
            lease = _Lease(str(auth["client_token"]), float(auth.get("lease_duration") or 0),
                           bool(auth.get("renewable")), self._monotonic())
        self.logins += 1
        return lease

    async def _renew(self, lease: _Lease) -> _Lease | None:
        """Extend the lease; None when it cannot be (then the caller logs in again)."""
        if not lease.renewable:
            return None if self._config.method != "token" else lease
        status, body = await self._send("POST", "auth/token/renew-self", {}, lease.token)
        auth = body.get("auth") if status == 200 else None
        if not isinstance(auth, dict):
            return None if self._config.method != "token" else lease
        self.renewals += 1
        ttl = float(auth.get("lease_duration") or 0)
        if ttl < lease.ttl * RENEW_FRACTION and self._config.method != "token":
            return None  # capped by the token's max TTL: a fresh login lasts longer
        return _Lease(lease.token, ttl, bool(auth.get("renewable")), self._monotonic())

    def _secret(self, file: str | None, env: str | None, what: str) -> str:
        if file:
            path = Path(file) if Path(file).is_absolute() else self._data_dir / file
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise VaultAuthError(f"cannot read the Vault {what} file {path}: "
                                     f"{exc.strerror}") from exc
            if not value:
                raise VaultAuthError(f"the Vault {what} file {path} is empty")
            return value
        value = self._environ.get(env or "", "").strip()
        if not value:
            raise VaultAuthError(f"the environment variable {env} (Vault {what}) is not set")
        return value


def _reason(status: int, body: Mapping[str, Any]) -> str:
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        return f"HTTP {status}: " + "; ".join(str(e) for e in errors)
    return f"HTTP {status}"


__all__ = ["AppRoleAuth", "CertAuth", "TokenAuth", "VaultAuthConfig", "VaultAuthError",
           "VaultLogin"]
