"""micromdm scepclient (Debian ``scep``) against ``gatehouse up``: enroll, renew, poll.

scepclient reuses ./csr.pem and ./self.pem next to its key, so each run gets a fresh
directory (or has them deleted).  It encrypts to every certificate of GetCACert unless
``-ca-fingerprint`` names the RA, and the internal CA's EC certificates cannot be
encrypted to, so the RA fingerprint (``gatehouse scep ra``) is always given.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.server import GatehouseServer, run_cli
from tests.unit.protocols.scep.server_setup import STATIC_CHALLENGE, challenge, start_scep_server

SCEPCLIENT = shutil.which("scepclient") or "scepclient"


@pytest.fixture(scope="module")
def gh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    # scepclient 2.1 signs with SHA-1 and encrypts with single DES whatever GetCACaps
    # says; the default profile refuses both (issue #10 rule 12), so its profiles turn
    # on the per-profile legacy switch, as an operator with such devices would.
    server = start_scep_server(tmp_path_factory.mktemp("scepclient") / "data",
                               legacy_clients=True)
    yield server
    server.stop()


def _run(gh: GatehouseServer, workdir: Path, *, profile: str = "default",
         secret: str | None = None, cn: str = "device", background: bool = False
         ) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    for name in ("csr.pem", "self.pem"):
        (workdir / name).unlink(missing_ok=True)
    fingerprint = run_cli(["scep", "ra", profile], gh.data_dir).stdout.strip()
    path = "/scep" if profile == "default" else f"/scep/{profile}"
    args = [SCEPCLIENT, "-server-url", f"{gh.http_url}{path}", "-private-key", "key.pem",
            "-certificate", "cert.pem", "-cn", cn, "-ca-fingerprint", fingerprint]
    if secret:
        args += ["-challenge", secret]
    if background:
        return subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    result = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _cert(workdir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((workdir / "cert.pem").read_bytes())


def test_enroll_with_dynamic_challenge_then_renew(gh: GatehouseServer, tmp_path: Path) -> None:
    _run(gh, tmp_path, secret=challenge(gh.data_dir), cn="scepclient-dyn")
    first = _cert(tmp_path)
    assert first.subject.rfc4514_string().startswith("CN=scepclient-dyn")
    assert first.issuer.rfc4514_string() == "CN=Gatehouse Issuing CA 1"
    _run(gh, tmp_path, cn="scepclient-dyn")  # key + cert present: RenewalReq
    renewed = _cert(tmp_path)
    assert renewed.serial_number != first.serial_number
    assert renewed.public_key() == first.public_key()
    shown = run_cli(["certs", "show", format(renewed.serial_number, "x")], gh.data_dir).stdout
    assert f'"replaces": "{format(first.serial_number, "x")}"' in shown


def test_enroll_with_static_challenge(gh: GatehouseServer, tmp_path: Path) -> None:
    _run(gh, tmp_path, profile="static", secret=STATIC_CHALLENGE, cn="scepclient-static")
    assert _cert(tmp_path).subject.rfc4514_string().startswith("CN=scepclient-static")


def test_wrong_challenge_fails(gh: GatehouseServer, tmp_path: Path) -> None:
    fingerprint = run_cli(["scep", "ra"], gh.data_dir).stdout.strip()
    result = subprocess.run([SCEPCLIENT, "-server-url", f"{gh.http_url}/scep", "-private-key",
                             "key.pem", "-certificate", "cert.pem", "-challenge", "wrong",
                             "-ca-fingerprint", fingerprint], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "badRequest" in result.stdout + result.stderr


def test_pending_request_is_polled_until_approved(gh: GatehouseServer, tmp_path: Path) -> None:
    """scepclient sleeps 30 s after PENDING and sends again; approval lands in between."""
    process = _run(gh, tmp_path, profile="manual", cn="scepclient-held", background=True)
    assert isinstance(process, subprocess.Popen)
    try:
        request_id = None
        deadline = time.monotonic() + 30
        while request_id is None and time.monotonic() < deadline:
            held = run_cli(["requests", "list", "--state", "held"], gh.data_dir).stdout
            request_id = next((line.split()[0] for line in held.splitlines()
                               if "scepclient-held" in line), None)
            time.sleep(0.5)
        assert request_id, "the request never reached the held state"
        run_cli(["requests", "approve", request_id], gh.data_dir)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "PENDING" in output
    assert _cert(tmp_path).subject.rfc4514_string().startswith("CN=scepclient-held")
