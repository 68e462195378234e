"""HTTP Basic users (RFC 7617) for EST, stored hashed in the credentials table.

``gatehouse user add PROFILE NAME`` writes a ``kind="password"`` credential whose secret
is an scrypt hash (gateway.auth.secrets; one of an older, lower cost is re-hashed at
the next successful login).  Verifying scrypt costs hundreds of milliseconds by design,
which an enrollment at device-fleet rates cannot pay on every request, so a *successful*
verification is remembered in process memory for a short TTL, keyed by
HMAC-SHA256(per-process random key, profile NUL user NUL password).  The cache never
holds a password, and its key dies with the process; a password change, a disabled
user or a deleted user takes effect after at most the TTL (0 turns the cache off).
Failures are never cached.  Nothing here logs a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.auth.secrets import hash_secret, needs_rehash, verify_secret
from gateway.store import credentials
from gateway.store.db import Database

PASSWORD_KIND = "password"  # noqa: S105 - the credential kind, not a secret
_MAX_CACHE = 100_000
# scrypt at PASSWORD_COST takes 128 MiB and a few hundred ms of a core: at most this many
# run at once per process, so a flood of wrong passwords cannot exhaust memory.
_SCRYPT_SLOTS = threading.BoundedSemaphore(2)


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated HTTP Basic user of one profile."""

    profile: str
    name: str


class UserDirectory:
    """Checks HTTP Basic credentials against the credentials table, with a small cache."""

    def __init__(self, db: Database, *, cache_seconds: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._ttl = cache_seconds
        self._monotonic = monotonic
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, float] = {}

    async def verify_async(self, profile: str, name: str, password: str) -> User | None:
        """``verify`` for the event loop: a cache hit answers at once; a real scrypt check
        (hundreds of ms at PASSWORD_COST) runs in a worker thread, so one client's login
        (or a flood of wrong passwords) never stalls every other request of the worker."""
        if name and password:
            expires = self._cache.get(self._token(profile, name, password))
            if expires is not None and expires > self._monotonic():
                return User(profile, name)
        return await asyncio.to_thread(self.verify, profile, name, password)

    def verify(self, profile: str, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs and the user is enabled; else None."""
        if not name or not password:
            return None
        token = self._token(profile, name, password)
        now = self._monotonic()
        expires = self._cache.get(token)
        if expires is not None:
            if expires > now:
                return User(profile, name)
            del self._cache[token]
        with self._db.session() as session:
            row = credentials.find(session, kind=PASSWORD_KIND, profile=profile, name=name)
            stored = None if row is None or row.disabled else row.secret_hash
        with _SCRYPT_SLOTS:
            if stored is None:
                # Spend the same time as a real check so unknown names are not revealed.
                verify_secret(password, _DUMMY_HASH)
                return None
            if not verify_secret(password, stored):
                return None
        if needs_rehash(stored):
            self._rehash(profile, name, stored, password)
        if self._ttl > 0:
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[token] = now + self._ttl
        return User(profile, name)

    def _rehash(self, profile: str, name: str, stored: str, password: str) -> None:
        """Bring a hash made at an older, lower cost up to PASSWORD_COST (rule 8); only if
        nobody changed it meanwhile."""
        fresh = hash_secret(password)
        with self._db.session() as session:
            row = credentials.find(session, kind=PASSWORD_KIND, profile=profile, name=name)
            if row is not None and row.secret_hash == stored:
                row.secret_hash = fresh

    def forget(self) -> None:
        """Drop every cached verification (e.g. after an operator changed users)."""
        self._cache.clear()

    def _token(self, profile: str, name: str, password: str) -> bytes:
        message = b"\0".join((profile.encode(), name.encode(), password.encode()))
        return hmac.new(self._key, message, hashlib.sha256).digest()


# A valid hash of a random password, so lookups of unknown users cost one scrypt too.
_DUMMY_HASH = ("scrypt$17$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
