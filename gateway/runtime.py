"""The Gateway: everything a process builds from the configuration, and closes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from gateway.auth.users import UserDirectory
from gateway.backends import Backends
from gateway.clock import Clock, SystemClock
from gateway.config import GatehouseConfig, config_path, database_url, load_config
from gateway.enrollment import EnrollmentService
from gateway.policy import PolicyEngine
from gateway.revocation.service import RevocationService
from gateway.services.acme import AcmeState
from gateway.services.ca import BackendCaCertificates, CaCertificates
from gateway.services.challenges import Challenges, StoreChallenges
from gateway.services.inventory import Inventory, StoreInventory
from gateway.services.requests import RequestLookup, StoreRequestLookup
from gateway.store.db import Database
from gateway.system_profiles import system_profiles

log = logging.getLogger("gatehouse")

CRL_REFRESH_INTERVAL = 600.0  # seconds


@dataclass
class Gateway:
    config: GatehouseConfig
    data_dir: Path
    clock: Clock
    db: Database
    backends: Backends
    policy: PolicyEngine
    enrollment: EnrollmentService
    revocation: RevocationService
    # The ports the protocol adapters use (gateway.services); built here, once.
    inventory: Inventory
    ca: CaCertificates
    requests: RequestLookup
    challenges: Challenges
    acme: AcmeState
    users: UserDirectory  # EST HTTP Basic users (scrypt, with a short success cache)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, config: GatehouseConfig, data_dir: Path, clock: Clock | None = None) -> Gateway:
        clock = clock or SystemClock()
        db = Database(database_url(config, data_dir), pool_size=config.database.pool_size)
        backends = Backends.build(config, data_dir, clock)
        # The built-in profiles of Gatehouse's own TLS and RA certificates (no door serves
        # them; the policy decides them for the system principal only).
        policy = PolicyEngine({**config.profiles, **system_profiles(config)})
        enrollment = EnrollmentService(db, policy, backends, clock, config.retry)
        revocation = RevocationService(db, backends, clock)
        return cls(config, data_dir, clock, db, backends, policy, enrollment, revocation,
                   inventory=StoreInventory(db), ca=BackendCaCertificates(config, backends),
                   requests=StoreRequestLookup(db), challenges=StoreChallenges(db, clock),
                   acme=AcmeState(db, data_dir),
                   users=UserDirectory(db, cache_seconds=config.est.password_cache_seconds))

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> Gateway:
        return cls.build(load_config(config_path(data_dir)), data_dir)

    # -- background work ---------------------------------------------------------------

    def start_background(self) -> None:
        """Start the retry worker and the CRL refresher on the running loop."""
        self._tasks.append(asyncio.create_task(self._retry_loop(), name="retry-worker"))
        self._tasks.append(asyncio.create_task(self._crl_loop(), name="crl-refresh"))

    async def _retry_loop(self) -> None:
        interval = self.config.retry.poll_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.enrollment.retry_due()
            except Exception:  # the worker must survive anything; the cause is logged
                log.exception("retry worker tick failed")

    async def _crl_loop(self) -> None:
        while True:
            try:
                await self.revocation.refresh_crls()
            except Exception:  # same: log and keep refreshing
                log.exception("CRL refresh failed")
            await asyncio.sleep(CRL_REFRESH_INTERVAL)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.backends.close()
        self.db.dispose()
