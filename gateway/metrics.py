"""Prometheus metrics (text exposition format 0.0.4) at ``/metrics``.

Counters and histograms are kept in prometheus-client's *multiprocess* mode, so with
``--workers N`` every scrape, whichever worker answers it, sums all workers: each worker
writes memory-mapped files under ``DATA/run/metrics/<server pid>/`` (set as
``PROMETHEUS_MULTIPROC_DIR`` when the app is built, before any metric exists).  Files of
a worker that died stay, so counters keep their totals across worker restarts.  Gauges
that describe shared state (queue depth by request state, backend health) are computed at
scrape time from the database and the backends, so they are the same on every instance.

Instruments are created on first use, never at import time.  ``enrollment_done``,
``certificate_issued`` and ``backend_call`` are the hooks the pipeline calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.model import RequestState
from gateway.store.db import Database
from gateway.store.requests import count_by_state

log = logging.getLogger("gatehouse.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_QUEUE_STATES = (RequestState.RECEIVED, RequestState.HELD, RequestState.SUBMITTED,
                 RequestState.PENDING)
_HEALTH_TTL = 10.0  # seconds a backend health answer is reused by scrapes
_AREAS = {"est": "est", ".well-known": "est", "scep": "scep", "cgi-bin": "scep", "acme": "acme",
          "admin": "admin", "console": "console", "crl": "revocation", "ocsp": "revocation",
          "ca": "revocation", "metrics": "metrics", "healthz": "health", "readyz": "health"}


@dataclass(frozen=True)
class Instruments:
    requests: Counter
    issued: Counter
    enrollment_seconds: Histogram
    backend_seconds: Histogram
    http_requests: Counter
    http_seconds: Histogram


_state: dict[str, Path] = {}


def configure(data_dir: Path) -> Path:
    """Choose this server's multiprocess directory (first call in a process wins)."""
    if "dir" in _state:
        return _state["dir"]
    parent = multiprocessing.parent_process()
    server_pid = parent.pid if parent is not None and parent.pid else os.getpid()
    base = data_dir / "run" / "metrics"
    path = base / str(server_pid)
    path.mkdir(parents=True, exist_ok=True)
    _remove_stale(base, keep=path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _state["dir"] = path
    # Instruments made before this (e.g. by `gatehouse up` issuing its own TLS and RA
    # certificates through the pipeline before the workers fork) hold in-memory values
    # that no scrape sees: make them again, backed by this directory's files.
    instruments.cache_clear()
    return path


def _remove_stale(base: Path, keep: Path) -> None:
    """Drop directories of servers that no longer run (their pid is gone)."""
    for child in base.iterdir():
        if child == keep or not child.name.isdigit():
            continue
        try:
            os.kill(int(child.name), 0)
        except ProcessLookupError:
            shutil.rmtree(child, ignore_errors=True)
        except PermissionError:
            continue  # alive, someone else's


@cache
def instruments() -> Instruments:
    return Instruments(
        requests=Counter("gatehouse_enrollment_requests", "Enrollment submissions by outcome",
                         ["protocol", "profile", "outcome"], registry=None),
        issued=Counter("gatehouse_certificates_issued", "Certificates added to the inventory",
                       ["protocol", "profile", "backend"], registry=None),
        enrollment_seconds=Histogram(
            "gatehouse_enrollment_duration_seconds", "Time to answer an enrollment submission",
            ["protocol", "outcome"], buckets=_LATENCY_BUCKETS, registry=None),
        backend_seconds=Histogram(
            "gatehouse_backend_request_duration_seconds", "CA backend issue calls",
            ["backend", "outcome"], buckets=_LATENCY_BUCKETS, registry=None),
        http_requests=Counter("gatehouse_http_requests", "HTTP requests by area and status class",
                              ["area", "method", "status"], registry=None),
        http_seconds=Histogram("gatehouse_http_request_duration_seconds",
                               "HTTP request latency by area", ["area"],
                               buckets=_LATENCY_BUCKETS, registry=None),
    )


# -- hooks the pipeline calls ----------------------------------------------------------------


def enrollment_done(protocol: str, profile: str, outcome: str, started: float) -> None:
    """One submission answered: issued | held | submitted | pending | <error kind>."""
    found = instruments()
    found.requests.labels(protocol, profile, outcome).inc()
    found.enrollment_seconds.labels(protocol, outcome).observe(time.perf_counter() - started)


def certificate_issued(protocol: str, profile: str, backend: str) -> None:
    instruments().issued.labels(protocol, profile, backend).inc()


@contextlib.contextmanager
def backend_call(backend: str) -> Iterator[None]:
    """Time one backend issue call; the outcome is 'error' if it raised."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        instruments().backend_seconds.labels(backend, outcome).observe(
            time.perf_counter() - started)


# -- HTTP ------------------------------------------------------------------------------------


class HttpMetricsMiddleware:
    """Count and time HTTP requests by area (first path segment, a closed set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        first = str(scope.get("path", "/")).lstrip("/").split("/", 1)[0]
        area = _AREAS.get(first, "other")
        status = 500
        started = time.perf_counter()

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            found = instruments()
            found.http_requests.labels(area, str(scope.get("method", "")),
                                       f"{status // 100}xx").inc()
            found.http_seconds.labels(area).observe(time.perf_counter() - started)


# -- scrape-time gauges ----------------------------------------------------------------------


class _SharedState(Collector):
    """Gauges read from the database and the backends when scraped."""

    def __init__(self, queue: dict[str, int], health: dict[str, bool]) -> None:
        self._queue = queue
        self._health = health

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("gatehouse_requests_open",
                                  "Requests not final yet, by state (shared by all instances); "
                                  "state=held is the approval queue", labels=["state"])
        for state, count in sorted(self._queue.items()):
            depth.add_metric([state], count)
        yield depth
        up = GaugeMetricFamily("gatehouse_backend_up", "1 if the CA backend reports healthy",
                               labels=["backend"])
        for name, ok in sorted(self._health.items()):
            up.add_metric([name], 1.0 if ok else 0.0)
        yield up


class _BackendHealth(Protocol):
    @property
    def ok(self) -> bool: ...


class _Backends(Protocol):
    def names(self) -> list[str]: ...

    async def health(self) -> Mapping[str, _BackendHealth]: ...


class MetricsSources(Protocol):
    """What the scrape endpoint reads: the data directory (multiprocess files), the
    database (queue depth) and the backends (health).  ``gateway.runtime.Gateway`` is one."""

    @property
    def data_dir(self) -> Path: ...

    @property
    def db(self) -> Database: ...

    @property
    def backends(self) -> _Backends: ...


class _HealthCache:
    def __init__(self) -> None:
        self.at = 0.0
        self.value: dict[str, bool] = {}

    async def get(self, gateway: MetricsSources) -> dict[str, bool]:
        if time.monotonic() - self.at > _HEALTH_TTL:
            try:
                health = await asyncio.wait_for(gateway.backends.health(), timeout=5)
                self.value = {name: item.ok for name, item in health.items()}
            except TimeoutError:
                self.value = dict.fromkeys(gateway.backends.names(), False)
            self.at = time.monotonic()
        return self.value


def mount(app: FastAPI, gateway: MetricsSources) -> None:
    path = configure(gateway.data_dir)
    instruments()
    health_cache = _HealthCache()
    app.add_middleware(HttpMetricsMiddleware)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(_request: Request) -> Response:
        """Prometheus scrape endpoint (unauthenticated, like most exporters)."""
        with gateway.db.session() as session:
            queue = count_by_state(session, _QUEUE_STATES)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
        registry.register(_SharedState(queue, await health_cache.get(gateway)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)
