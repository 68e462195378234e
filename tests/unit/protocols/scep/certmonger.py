"""Drive the real certmonger daemon on a private D-Bus session (see shared CLIENTS.md)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path


class Certmonger:
    """certmonger -s -n with its state under ``workdir``; getcert talks to it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = dict(os.environ)
        self._daemon: subprocess.Popen[bytes] | None = None
        self._bus_pid: int | None = None

    def start(self) -> Certmonger:
        for name in ("cas", "requests", "local", "config", "tmp"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        out = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1",
                              "--print-pid=1"], capture_output=True, text=True, check=True,
                             timeout=30).stdout.split()
        address, self._bus_pid = out[0], int(out[1])
        self.env.update({
            "DBUS_SESSION_BUS_ADDRESS": address,
            "CERTMONGER_CAS_DIR": str(self.workdir / "cas"),
            "CERTMONGER_REQUESTS_DIR": str(self.workdir / "requests"),
            "CERTMONGER_LOCAL_CA_DIR": str(self.workdir / "local"),
            "CERTMONGER_CONFIG_DIR": str(self.workdir / "config"),
            "CERTMONGER_TMPDIR": str(self.workdir / "tmp"),
            "CERTMONGER_SYSTEM_LOCK_FILE": str(self.workdir / "lock"),
            # In session mode certmonger also reads ~/.config/certmonger: keep it private.
            "HOME": str(self.workdir / "home"),
            "XDG_CONFIG_HOME": str(self.workdir / "home" / ".config"),
            "XDG_DATA_HOME": str(self.workdir / "home" / ".local" / "share"),
        })
        (self.workdir / "home" / ".config").mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "daemon.log").open("ab")
        self._daemon = subprocess.Popen(["/usr/sbin/certmonger", "-s", "-n", "-d", "3"],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.getcert("list-cas", check=False).returncode == 0:
                return self
            time.sleep(0.3)
        raise AssertionError("certmonger did not come up:\n" + self.log())

    def log(self) -> str:
        return (self.workdir / "daemon.log").read_text(errors="replace")

    def getcert(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["getcert", args[0], "-s", *args[1:]], env=self.env,
                                capture_output=True, text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"getcert {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def add_scep_ca(self, nickname: str, url: str) -> None:
        """``getcert add-scep-ca``.  On a loaded machine getcert's D-Bus call can time out
        on the client side after the daemon already added the CA; the retry then says the
        nickname exists.  Accept that only when the daemon lists this CA with this URL."""
        result = self.getcert("add-scep-ca", "-c", nickname, "-u", url, check=False)
        if result.returncode == 0:
            return
        listing = self.getcert("list-cas", "-c", nickname, check=False).stdout
        if "already a CA with the nickname" in result.stdout + result.stderr and url in listing:
            return
        raise AssertionError(f"getcert add-scep-ca -c {nickname} -u {url}: "
                             f"{result.stdout}{result.stderr}\n{listing}")

    def status(self, request_id: str) -> str:
        listing = self.getcert("list", "-i", request_id).stdout
        match = re.search(r"status: (\S+)", listing)
        return match.group(1) if match else "?"

    def wait_status(self, request_id: str, wanted: set[str], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            status = self.status(request_id)
            if status in wanted:
                return status
            time.sleep(0.5)
        raise AssertionError(f"request {request_id} is {status}, not {wanted}:\n"
                             + self.getcert("list", "-i", request_id).stdout
                             + self.log()[-4000:])

    def stop(self) -> None:
        if self._daemon and self._daemon.poll() is None:
            self._daemon.terminate()
            try:
                self._daemon.wait(10)
            except subprocess.TimeoutExpired:
                self._daemon.kill()
        if self._bus_pid:
            try:
                os.kill(self._bus_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
