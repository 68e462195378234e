"""Serving: HTTPS and plain-HTTP listeners, one or more worker processes.

The parent binds both sockets, then runs the workers (in-process for one worker, else
N forked processes that inherit the sockets and share the database).  A worker that dies
is restarted; SIGTERM/SIGINT stop everything gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from OpenSSL import SSL

from gateway import logs
from gateway.config import GatehouseConfig, config_path, load_config, resolve_path
from gateway.tls_client import client_cert_anchor_paths, server_context, tls_protocol

log = logging.getLogger("gatehouse.serve")


@dataclass(frozen=True, slots=True)
class Listeners:
    https: str
    http: str | None


def bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, int(port)))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """A uvicorn server whose signals are handled by the worker, not by itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def tls_context(config: GatehouseConfig, data_dir: Path) -> SSL.Context:
    """TLS 1.2+, the server certificate, and optional client certificates that the
    application validates (gateway.tls_client)."""
    return server_context(resolve_path(data_dir, config.server.tls.cert),
                          resolve_path(data_dir, config.server.tls.key),
                          client_cert_anchor_paths(config, data_dir))


def _uvicorn_config(app: Any, *, tls: bool, config: GatehouseConfig, data_dir: Path) -> uvicorn.Config:
    kwargs: dict[str, Any] = {}
    if tls:
        # TLS is terminated by the protocol (gateway.tls_client), not by uvicorn: uvicorn
        # sees a plain listener; websockets are off (the upgrade would bypass the TLS layer).
        kwargs["http"] = tls_protocol(tls_context(config, data_dir))
        kwargs["ws"] = "none"
    return uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                          server_header=False, proxy_headers=False, timeout_keep_alive=30,
                          **kwargs)


async def _run_worker(data_dir: Path, sockets: dict[str, socket.socket]) -> None:
    from gateway.app import create_app
    from gateway.runtime import Gateway

    config = load_config(config_path(data_dir))
    gateway = Gateway.build(config, data_dir)
    app = create_app(gateway)
    servers = []
    tasks = []
    for name, sock in sockets.items():
        server = _Server(_uvicorn_config(app, tls=name == "https", config=config,
                                         data_dir=data_dir))
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    gateway.start_background()
    try:
        await asyncio.gather(*tasks)
    finally:
        await gateway.close()


def _worker_main(data_dir: str, fds: dict[str, int]) -> None:
    config = load_config(config_path(Path(data_dir)))
    logs.configure(config.logging.level, config.logging.json_lines)
    sockets = {name: socket.socket(fileno=fd) for name, fd in fds.items()}
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_run_worker(Path(data_dir), sockets))


def serve(data_dir: Path, listeners: Listeners, workers: int) -> int:
    """Bind, run the workers, restart the ones that die, stop on SIGTERM/SIGINT."""
    sockets = {"https": bind(listeners.https)}
    if listeners.http:
        sockets["http"] = bind(listeners.http)
    fds = {name: sock.fileno() for name, sock in sockets.items()}
    if workers == 1:
        _worker_main(str(data_dir), fds)
        return 0
    context = multiprocessing.get_context("fork")
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker_main, args=(str(data_dir), fds), daemon=False)
        process.start()
        return process

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    processes = [start() for _ in range(workers)]
    log.info("workers started", extra={"workers": workers, "pids": [p.pid for p in processes]})
    while not stopping:
        time.sleep(0.5)
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                log.warning("worker died; restarting",
                            extra={"pid": process.pid, "exitcode": process.exitcode})
                processes[index] = start()
    for process in processes:
        if process.pid and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
    sys.stdout.flush()
    return 0
