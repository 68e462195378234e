"""Benchmark: EST simpleenroll over HTTPS against `gatehouse serve --workers 2` (SQLite).

Run:  python tests/perf/est_bench.py [--count 1500] [--clients 16] [--workers 2]

What it does, in one run on one machine:
  1. `gatehouse init` in a temporary data directory, one EST user, then
     `gatehouse serve --workers N` as a separate process (SQLite, the default config);
  2. pre-generates the CSRs (EC P-256) before timing;
  3. C concurrent clients, each one TLS connection with keep-alive, POST simpleenroll
     with HTTP Basic, one request after another; a warm-up round first;
  4. reads the server's CPU time (utime+stime of the parent and every worker, from
     /proc/<pid>/stat) before and after the measured round;
  5. measures, in this process, the bare issue cost of the same internal CA
     (``InternalCa.sign_certificate`` with the same subject/SAN/extensions) and a bare
     `cryptography` certificate signature, as the floor.
The clients share the machine's cores with the server (a 2-core box has no spare core
for the load generator), so certs/s is a lower bound; CPU-ms per certificate is not
affected by that.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import secrets
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.support.server import GatehouseServer, run_cli

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        out.extend(int(c) for c in children)
    return out


def server_cpu(root_pid: int) -> dict[int, float]:
    """CPU seconds of the server process tree (the launcher, the parent, its workers)."""
    seen: dict[int, float] = {}
    stack = [root_pid]
    while stack:
        pid = stack.pop()
        try:
            seen[pid] = _cpu_seconds(pid)
            stack.extend(_children(pid))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return seen


def make_csrs(count: int) -> list[bytes]:
    key = ec.generate_private_key(ec.SECP256R1())  # one key: CSR signing is client cost
    out = []
    for i in range(count):
        name = f"dev{i}-{secrets.token_hex(4)}.bench.test"
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
               .sign(key, hashes.SHA256()))
        out.append(base64.b64encode(csr.public_bytes(Encoding.DER)))
    return out


async def client(host: str, port: int, context: ssl.SSLContext, auth: str,
                 bodies: list[bytes], latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port, ssl=context,
                                                   server_hostname="127.0.0.1")
    ok = 0
    for body in bodies:
        head = (f"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Basic {auth}\r\nContent-Type: application/pkcs10\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        started = time.perf_counter()
        writer.write(head + body)
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        if status_line.split()[1] == b"200":
            ok += 1
        else:
            raise SystemExit(f"unexpected answer {status_line!r}")
    writer.close()
    return ok


async def run_round(host: str, port: int, root: Path, auth: str, csrs: list[bytes],
                    clients: int) -> tuple[float, list[float]]:
    context = ssl.create_default_context(cafile=str(root))
    latencies: list[float] = []
    shares = [csrs[i::clients] for i in range(clients)]
    started = time.perf_counter()
    await asyncio.gather(*(client(host, port, context, auth, share, latencies)
                           for share in shares))
    return time.perf_counter() - started, latencies


def bare_costs(data_dir: Path, count: int) -> tuple[float, float]:
    """(internal CA sign_certificate, bare cryptography sign) CPU-ms per certificate."""
    from gateway.model import Identifier, IdentifierType
    from gateway.runtime import Gateway

    gateway = Gateway.from_data_dir(data_dir)
    backend = gateway.backends.get("internal")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev.bench.test")])
    sans = (Identifier(IdentifierType.DNS, "dev.bench.test"),)
    start = time.process_time()
    for _ in range(count):
        backend.sign_certificate(  # type: ignore[attr-defined]
            key.public_key(), subject=subject, sans=sans, not_before=now,
            not_after=now + dt.timedelta(days=90),
            key_usage={"digital_signature"},
            extended_key_usage=("1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"))
    internal = (time.process_time() - start) / count * 1000
    ca_key = ec.generate_private_key(ec.SECP256R1())
    start = time.process_time()
    for _ in range(count):
        (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName("dev.bench.test")]),
                        critical=False)
         .sign(ca_key, hashes.SHA256()))
    bare = (time.process_time() - start) / count * 1000
    gateway.db.dispose()
    return internal, bare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1500, help="measured enrollments")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="est-bench-") as tmp:
        data_dir = Path(tmp) / "gatehouse-data"
        run_cli(["init"], data_dir)
        password = secrets.token_urlsafe(16)
        run_cli(["user", "add", "default", "bench"], data_dir, stdin=password + "\n")
        auth = base64.b64encode(f"bench:{password}".encode()).decode()
        csrs = make_csrs(args.count + args.warmup)
        server = GatehouseServer(data_dir, command="serve", workers=args.workers).start()
        try:
            assert server.process is not None
            host, port = "127.0.0.1", server.https_port
            asyncio.run(run_round(host, port, server.root_pem, auth, csrs[:args.warmup],
                                  args.clients))
            load_before = os.getloadavg()[0]
            before = server_cpu(server.process.pid)
            elapsed, latencies = asyncio.run(run_round(host, port, server.root_pem, auth,
                                                       csrs[args.warmup:], args.clients))
            after = server_cpu(server.process.pid)
            load_after = os.getloadavg()[0]
        finally:
            server.stop()
        cpu = sum(after.get(pid, 0.0) - before.get(pid, 0.0) for pid in after)
        internal, bare = bare_costs(data_dir, 300)
    latencies.sort()
    rate = args.count / elapsed
    cpu_ms = cpu / args.count * 1000
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(f"\nEST simpleenroll over HTTPS, {args.count} certificates, {args.clients} keep-alive "
          f"clients, `gatehouse serve --workers {args.workers}`, SQLite, {os.cpu_count()} CPUs\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| certificates/s | {rate:,.0f} |")
    print(f"| latency p50 | {p50:.1f} ms |")
    print(f"| latency p99 | {p99:.1f} ms |")
    print(f"| server CPU per certificate | {cpu_ms:.2f} ms |")
    print(f"| internal CA issue cost (sign_certificate), same run | {internal:.2f} ms |")
    print(f"| bare cryptography sign (EC P-256), same run | {bare:.2f} ms |")
    print(f"| server CPU / internal CA issue cost | {cpu_ms / internal:.1f}x |")
    print(f"| server cores busy during the run | {cpu / elapsed:.2f} of {os.cpu_count()} |")
    print(f"| machine load average (1 min) before / after | {load_before:.1f} / "
          f"{load_after:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
