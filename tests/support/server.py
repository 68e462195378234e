"""Run gatehouse as a real process on loopback ports, for e2e tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gatehouse_cmd() -> list[str]:
    """The launcher: the real CLI, plus the test-only backend types of tests.support."""
    return [sys.executable, "-m", "tests.support.launcher"]


def run_cli(args: Sequence[str], data_dir: Path, *, stdin: str | None = None,
            env: dict[str, str] | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*gatehouse_cmd(), *args, "--data-dir", str(data_dir)],
                            input=stdin, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, **(env or {})}, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"gatehouse {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


class GatehouseServer:
    """``gatehouse up`` (or ``serve``) in a subprocess with its own data dir and ports."""

    def __init__(self, data_dir: Path, *, command: str = "up", workers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.command = command
        self.workers = workers
        self.env = env or {}
        self.https_port = free_port()
        self.http_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def root_pem(self) -> Path:
        return self.data_dir / "ca" / "root.pem"

    def start(self, timeout: float = 60) -> GatehouseServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*gatehouse_cmd(), self.command, "--data-dir", str(self.data_dir),
             "--https", f"127.0.0.1:{self.https_port}", "--http", f"127.0.0.1:{self.http_port}",
             "--workers", str(self.workers)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **self.env},
            start_new_session=True)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"gatehouse exited {self.process.returncode}:\n{self.log()}")
            if self.root_pem.exists():
                try:
                    context = ssl.create_default_context(cafile=str(self.root_pem))
                    with socket.create_connection(("127.0.0.1", self.https_port), timeout=2) as raw, \
                            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                        if tls.recv(64).startswith(b"HTTP/1.1 200"):
                            return
                except (OSError, ssl.SSLError):
                    pass
            time.sleep(0.2)
        raise AssertionError(f"gatehouse not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, like a power cut."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
