"""Soak test: mixed EST / SCEP / admin-API load on a 2-worker server for a bounded time
while workers are SIGKILLed (and restarted by ``gatehouse serve``), then an accounting of
every request and every certificate.

Run:  python tests/perf/soak.py [--duration 90] [--clients 4] [--kill-every 15]
                                 [--postgres URL] [--openbao [--outage 10]]

With --openbao a share of EST and admin-API load goes to a profile on an OpenBao PKI
backend, which is stopped (SIGSTOP: it stops answering) for --outage seconds a third of
the way in; requests caught by the outage are retried by the gateway's retry worker.

Afterwards:
  * every request the clients made is, in the database, issued, held (manual-approval
    profile), denied or failed with a stated reason, or pending at the CA with a next
    poll scheduled -- none lost; requests a killed worker held are driven by the retry
    worker once their lease (10 s here) runs out;
  * every issued request's certificate is in the inventory exactly once, and every
    certificate in the inventory belongs to exactly one issued request;
  * every certificate a client received is in the inventory.
Exit status 1 if any of that fails.  Prints a markdown summary (docs/operations.md).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from gateway.store.tables import CertificateRow, RequestRow
from tests.e2e.test_admin_support import create_token, init_data_dir, tls_context
from tests.support.openbao import OpenBao
from tests.support.pki import csr_der, csr_pem, make_csr
from tests.support.server import GatehouseServer
from tests.unit.protocols.scep.client import (
    Client,
    csr_with_challenge,
    ra_from_ca_ra_cert,
    self_signed,
)

FINAL_OK = {"issued", "held", "denied", "failed"}


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    serials: list[str] = field(default_factory=list)
    retries: int = 0

    def add(self, protocol: str, outcome: str, seconds: float, serial: str | None) -> None:
        with self.lock:
            self.outcomes[(protocol, outcome)] += 1
            self.latencies.setdefault((protocol, outcome), []).append(seconds)
            if serial:
                self.serials.append(serial)


def with_retries(tally: Tally, call):  # type: ignore[no-untyped-def]
    """Resend the same request when a worker died under it (connection reset)."""
    for attempt in range(8):
        try:
            return call()
        except (httpx.TransportError, ConnectionError):
            with tally.lock:
                tally.retries += 1
            time.sleep(0.5 * (attempt + 1))
    raise RuntimeError("gave up after 8 attempts")


class Load:
    def __init__(self, server: GatehouseServer, admin: str, tally: Tally) -> None:
        self.server = server
        self.tally = tally
        self.context = tls_context(server.root_pem)
        self.admin_headers = {"Authorization": f"Bearer {admin}"}
        with httpx.Client() as client:
            p7 = client.get(f"{server.http_url}/scep?operation=GetCACert").content
        self.ra_der = ra_from_ca_ra_cert(p7)[0]

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(verify=self.context, timeout=60, **kwargs)  # type: ignore[arg-type]

    def est(self, n: int, profile: str) -> None:
        body = base64.encodebytes(csr_der(make_csr(f"est-{n}", dns=[f"est-{n}.soak.test"])[0]))
        url = f"{self.server.https_url}/.well-known/est/{profile}/simpleenroll"
        started = time.perf_counter()

        def call() -> httpx.Response:
            with self.client(auth=("soak", "soak-password")) as c:
                return c.post(url, content=body, headers={"content-type": "application/pkcs10"})

        answer = with_retries(self.tally, call)
        serial = None
        if answer.status_code == 200:
            from cryptography.hazmat.primitives.serialization import pkcs7

            der = base64.b64decode(answer.content)
            serial = format(pkcs7.load_der_pkcs7_certificates(der)[0].serial_number, "x")
        self.tally.add(f"est/{profile}", str(answer.status_code), time.perf_counter() - started,
                       serial)

    def scep(self, n: int) -> None:
        started = time.perf_counter()

        def challenge() -> httpx.Response:
            with self.client(headers=self.admin_headers) as c:
                return c.post(f"{self.server.https_url}/admin/api/challenges",
                              json={"profile": "default"})

        secret = with_retries(self.tally, challenge).json()["challenge"]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        scep = Client(ra_der=self.ra_der, key=key, signer=self_signed(key))
        message = scep.pkcs_req(csr_with_challenge(key, f"scep-{n}", secret))

        def call() -> httpx.Response:
            with self.client() as c:
                return c.post(f"{self.server.http_url}/scep?operation=PKIOperation",
                              content=message,
                              headers={"content-type": "application/x-pki-message"})

        reply = scep.read(with_retries(self.tally, call).content)
        serial = format(reply.certificates[0].serial_number, "x") if reply.status == "0" \
            else None
        self.tally.add("scep", {"0": "success", "2": "failure", "3": "pending"}[reply.status],
                       time.perf_counter() - started, serial)

    def manual(self, n: int, profile: str) -> None:
        body = {"profile": profile, "transaction_id": str(uuid.uuid4()),
                "csr": csr_pem(make_csr(f"api-{n}", dns=[f"api-{n}.soak.test"])[0]).decode()}
        started = time.perf_counter()

        def call() -> httpx.Response:
            with self.client(headers=self.admin_headers) as c:
                return c.post(f"{self.server.https_url}/admin/api/certificates", json=body)

        answer = with_retries(self.tally, call)
        serial = answer.json()["certificate"]["serial"] if answer.status_code == 201 else None
        self.tally.add(f"admin-api/{profile}", str(answer.status_code),
                       time.perf_counter() - started, serial)


def worker_pids(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                out.append(int(entry.name))
    return out


def run(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="gatehouse-soak-"))
    data_dir = base / "gatehouse-data"
    env = {"GATEHOUSE_DATABASE_URL": args.postgres} if args.postgres else {}
    init_data_dir(data_dir, database_url=args.postgres)
    # A short lease, so a request held by a killed worker is re-driven within the run.
    config_file = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["retry"] = {**config.get("retry", {}), "lease": "10s", "base_delay": "2s",
                       "max_delay": "10s"}
    bao = None
    if args.openbao:  # a second, external CA that the test stops and starts
        bao = OpenBao(base / "openbao").start()
        bao.setup_pki()
        (data_dir / "bao-secret-id").write_text(bao.secret_id + "\n")
        config["backends"]["openbao"] = {
            "type": "vault", "url": bao.url, "mount": "pki", "ca_cert": str(bao.ca_pem),
            "timeout": 2, "role": "gatehouse",
            "auth": {"method": "approle", "role_id": bao.role_id,
                     "secret_id_file": "bao-secret-id"}}
        config["profiles"]["vaulted"] = {"backend": "openbao", "sans": {"dns": {"allow": ["**"]}}}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    server = GatehouseServer(data_dir, workers=2, env=env).start()
    assert server.process is not None
    tally = Tally()
    kills = outages = 0
    try:
        admin = create_token(data_dir, "admin", "soak", env=env)
        with httpx.Client(verify=tls_context(server.root_pem),
                          headers={"Authorization": f"Bearer {admin}"}) as c:
            for profile in ("default", "approval", *(["vaulted"] if bao else [])):
                c.post(f"{server.https_url}/admin/api/users",
                       json={"profile": profile, "name": "soak", "password": "soak-password"})
        load = Load(server, admin, tally)
        deadline = time.monotonic() + args.duration
        errors: list[str] = []
        counter = iter(range(10**9))
        counter_lock = threading.Lock()

        def client_loop(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                with counter_lock:
                    n = next(counter)
                pick = rng.random()
                try:
                    vaulted = bao is not None and rng.random() < 0.4
                    if pick < 0.4:
                        load.est(n, "approval" if rng.random() < 0.1
                                 else "vaulted" if vaulted else "default")
                    elif pick < 0.7:
                        load.scep(n)
                    else:
                        load.manual(n, "vaulted" if vaulted else "default")
                except Exception as exc:  # a client-side failure is a finding: record it
                    errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        outage_at = started + args.duration / 3 if bao else float("inf")
        next_kill = started + args.kill_every
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = time.monotonic()
            if now >= next_kill and now < deadline:
                pids = worker_pids(server.process.pid)
                if pids:
                    os.kill(random.choice(pids), signal.SIGKILL)
                    kills += 1
                next_kill = now + args.kill_every
            if bao is not None and now >= outage_at:
                bao.pause()  # the CA stops answering (SIGSTOP): calls time out
                time.sleep(args.outage)
                bao.resume()
                outages += 1
                outage_at = float("inf")
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        settled = settle(server, args.postgres)
        print(f"open requests settled {settled:.1f} s after the load stopped")
        if outages:
            print(f"CA backend (OpenBao) stopped {outages}x for {args.outage:.0f} s each")
        ok = account(server, args.postgres, tally, errors, elapsed, kills)
    finally:
        server.stop()
        if bao is not None:
            bao.stop()
    return 0 if ok else 1


def engine_for(server: GatehouseServer, postgres: str | None) -> Engine:
    url = postgres or f"sqlite:///{server.data_dir / 'gatehouse.db'}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url)


def settle(server: GatehouseServer, postgres: str | None, limit: float = 60) -> float:
    """Wait until no request is received/submitted (leases of killed workers run out and
    the retry worker drives them); returns the seconds it took."""
    engine = engine_for(server, postgres)
    started = time.monotonic()
    try:
        while time.monotonic() - started < limit:
            with engine.connect() as db:
                open_count = db.scalar(select(func.count()).select_from(RequestRow).where(
                    RequestRow.state.in_(["received", "submitted"])))
            if not open_count:
                break
            time.sleep(1)
    finally:
        engine.dispose()
    return time.monotonic() - started


def account(server: GatehouseServer, postgres: str | None, tally: Tally, errors: list[str],
            elapsed: float, kills: int) -> bool:
    engine = engine_for(server, postgres)
    problems: list[str] = []
    with engine.connect() as db:
        states = Counter(dict(db.execute(select(RequestRow.state, func.count())
                                         .group_by(RequestRow.state)).all()))
        for row in db.execute(select(RequestRow.id, RequestRow.state, RequestRow.reason,
                                     RequestRow.next_attempt_at)):
            if row.state in FINAL_OK:
                if row.state in ("denied", "failed") and not row.reason:
                    problems.append(f"request {row.id} {row.state} without a reason")
            elif row.state == "pending":  # the CA said pending: polled later
                if row.next_attempt_at is None:
                    problems.append(f"request {row.id} pending with no next attempt")
            elif row.state in ("submitted", "received"):
                problems.append(f"request {row.id} still {row.state} after settling")
            else:
                problems.append(f"request {row.id} in unknown state {row.state}")
        issued = dict(db.execute(select(RequestRow.id, RequestRow.certificate_serial)
                                 .where(RequestRow.state == "issued")).all())
        inventory = Counter(dict(db.execute(select(CertificateRow.serial, func.count())
                                            .group_by(CertificateRow.serial)).all()))
        owners = Counter(r for (r,) in db.execute(select(CertificateRow.request_id)))
    engine.dispose()
    if any(n != 1 for n in inventory.values()):
        problems.append("a serial appears more than once in the inventory")
    missing = [s for s in issued.values() if s not in inventory]
    if missing:
        problems.append(f"{len(missing)} issued requests without an inventory entry")
    if len(inventory) != len(issued) or any(n != 1 for n in owners.values()):
        problems.append(f"inventory {len(inventory)} vs issued requests {len(issued)}")
    lost = [s for s in tally.serials if s not in inventory]
    if lost:
        problems.append(f"{len(lost)} certificates clients received are not in the inventory")
    if errors:
        problems.append(f"{len(errors)} client errors, e.g. {errors[0]}")

    total = sum(tally.outcomes.values())
    print(f"## Soak: {elapsed:.0f} s, 2 workers, {kills} worker kills, "
          f"{'PostgreSQL' if postgres else 'SQLite'}\n")
    print(f"{total} client requests ({total / elapsed:.1f}/s), {tally.retries} resent after a "
          f"connection died\n")
    print("| protocol | answer | count | p50 s | p95 s |")
    print("|---|---|---|---|---|")
    for (protocol, outcome), count in sorted(tally.outcomes.items()):
        lat = sorted(tally.latencies[(protocol, outcome)])
        p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
        print(f"| {protocol} | {outcome} | {count} | {statistics.median(lat):.3f} | {p95:.3f} |")
    print(f"\nrequests in the database by state: {dict(sorted(states.items()))}")
    print(f"inventory: {len(inventory)} certificates, each once; "
          f"{len(tally.serials)} received by clients, all in the inventory: {not lost}")
    print("\nRESULT: " + ("OK" if not problems else "FAILED: " + "; ".join(problems[:10])))
    return not problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=90, help="seconds of load (default 90)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=15, help="seconds between kills")
    parser.add_argument("--postgres", help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--openbao", action="store_true",
                        help="add an OpenBao CA backend (bao binary) and stop it once mid-run")
    parser.add_argument("--outage", type=float, default=10, help="seconds the CA is stopped")
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
