"""certmonger (Debian 0.79, scep-submit helper) against ``gatehouse up``.

The daemon runs on a private D-Bus session with its state in the test's directory.  It
enrolls (challenge via ``-L``), renews (``resubmit``: a PKCSReq signed with the current
certificate), rekeys, and polls a pending request until an operator approves it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.server import GatehouseServer, run_cli
from tests.unit.protocols.scep.certmonger import Certmonger
from tests.unit.protocols.scep.server_setup import STATIC_CHALLENGE, challenge, start_scep_server

DONE = {"MONITORING", "CA_REJECTED", "CA_UNREACHABLE", "NEED_GUIDANCE"}


@pytest.fixture(scope="module")
def gh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    server = start_scep_server(tmp_path_factory.mktemp("certmonger") / "data")
    yield server
    server.stop()


@pytest.fixture
def monger(tmp_path: Path) -> Iterator[Certmonger]:
    daemon = Certmonger(tmp_path / "cm").start()
    yield daemon
    daemon.stop()


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_helper_reads_caps_and_ca_certs(gh: GatehouseServer) -> None:
    caps = subprocess.run(["/usr/lib/certmonger/scep-submit", "-u", f"{gh.http_url}/scep", "-c"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert "AES" in caps and "SHA-512" in caps and "Renewal" in caps
    certs = subprocess.run(["/usr/lib/certmonger/scep-submit", "-u", f"{gh.http_url}/scep",
                            "-C"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert certs.count("BEGIN CERTIFICATE") >= 2


def test_enroll_dynamic_then_renew_then_rekey(gh: GatehouseServer, monger: Certmonger,
                                              tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    monger.add_scep_ca("gh", f"{gh.http_url}/scep")
    monger.getcert("request", "-c", "gh", "-f", str(cert), "-k", str(key), "-N",
                   "CN=certmonger-dyn", "-L", challenge(gh.data_dir), "-I", "dyn")
    assert monger.wait_status("dyn", DONE) == "MONITORING"
    first = _cert(cert)
    assert first.subject.rfc4514_string() == "CN=certmonger-dyn"
    monger.getcert("resubmit", "-i", "dyn")
    monger.wait_status("dyn", {"SUBMITTING", "CA_WORKING", "MONITORING"}, timeout=10)
    renewed = _wait_new(monger, "dyn", cert, first)
    assert renewed.public_key() == first.public_key()
    monger.getcert("rekey", "-i", "dyn")
    rekeyed = _wait_new(monger, "dyn", cert, renewed)
    assert rekeyed.public_key() != renewed.public_key()
    listing = run_cli(["requests", "list"], gh.data_dir).stdout
    assert listing.count("CN=certmonger-dyn") >= 3


def _wait_new(monger: Certmonger, request_id: str, path: Path,
              old: x509.Certificate) -> x509.Certificate:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if monger.status(request_id) == "MONITORING" and path.exists():
            current = _cert(path)
            if current.serial_number != old.serial_number:
                return current
        time.sleep(0.5)
    raise AssertionError(monger.getcert("list", "-i", request_id).stdout)


def test_enroll_with_static_challenge(gh: GatehouseServer, monger: Certmonger,
                                      tmp_path: Path) -> None:
    monger.add_scep_ca("static", f"{gh.http_url}/scep/static")
    monger.getcert("request", "-c", "static", "-f", str(tmp_path / "c.pem"), "-k",
                   str(tmp_path / "k.pem"), "-N", "CN=certmonger-static", "-L",
                   STATIC_CHALLENGE, "-I", "st")
    assert monger.wait_status("st", DONE) == "MONITORING"


def test_pending_request_polls_until_approved(gh: GatehouseServer, monger: Certmonger,
                                              tmp_path: Path) -> None:
    import time

    monger.add_scep_ca("manual", f"{gh.http_url}/scep/manual")
    monger.getcert("request", "-c", "manual", "-f", str(tmp_path / "c.pem"), "-k",
                   str(tmp_path / "k.pem"), "-N", "CN=certmonger-held", "-I", "held")
    monger.wait_status("held", {"CA_WORKING"})
    held = run_cli(["requests", "list", "--state", "held"], gh.data_dir).stdout
    request_id = next(line.split()[0] for line in held.splitlines() if "certmonger-held" in line)
    run_cli(["requests", "approve", request_id], gh.data_dir)
    monger.getcert("resubmit", "-i", "held")  # poll now instead of at certmonger's next tick
    deadline = time.monotonic() + 60
    while monger.status("held") != "MONITORING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert monger.status("held") == "MONITORING", monger.getcert("list", "-i", "held").stdout
    assert _cert(tmp_path / "c.pem").subject.rfc4514_string() == "CN=certmonger-held"
