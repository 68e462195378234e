"""SCEP benchmark: full enrollments against gatehouse and micromdm scepserver, same run.

    cd /work/main && PYTHONPATH=. python3 tests/perf/scep_bench.py [--clients 4] [--enrollments 120]

One enrollment is what a device does: GetCACaps, GetCACert, PKIOperation(PKCSReq), driven
by the real micromdm ``scepclient`` with a pre-generated RSA-2048 key (so the client's key
generation does not compete for the CPU).  N enrollments run concurrently.  Reported:
enrollments/s and the *server's own* CPU time per enrollment, read from /proc (utime +
stime of every process of the server), which is the fair figure on a 2-core machine where
the clients compete for the CPU.

scepserver binds every interface and has no bind option, so the whole benchmark re-runs
itself inside a private network namespace (``unshare -n``, then ``ip link set lo up``): both
servers and the load clients see only that namespace's loopback.  Needs root.
gatehouse runs with ``--workers 2`` on SQLite, as ``gatehouse up`` sets it up, with one
dynamic challenge allowing every enrollment.  Bounded: it stops after --enrollments per
server or --max-seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from tests.support.server import GatehouseServer, free_port, run_cli  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(session_id: int) -> float:
    """utime + stime of every live process in a session (the server and its workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == session_id:  # field 6 of stat: session id
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / CLK_TCK


def make_keys(directory: Path, count: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path = directory / f"{index}.pem"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
        paths.append(path)
    return paths


def enroll(work: Path, key: Path, url: str, challenge: str, fingerprint: str | None,
           index: int) -> bool:
    directory = work / f"run-{index}"
    directory.mkdir(parents=True)
    shutil.copy(key, directory / "key.pem")
    args = ["scepclient", "-server-url", url, "-private-key", "key.pem", "-certificate",
            "cert.pem", "-challenge", challenge, "-cn", f"bench-{index}"]
    if fingerprint:
        args += ["-ca-fingerprint", fingerprint]
    result = subprocess.run(args, cwd=directory, capture_output=True, timeout=120, check=False)
    ok = result.returncode == 0 and (directory / "cert.pem").exists()
    if not ok:
        (work / "failures.log").open("ab").write(result.stdout + result.stderr + b"\n")
    return ok


def load(name: str, work: Path, keys: list[Path], url: str, challenge: str,
         fingerprint: str | None, clients: int, session_id: int, max_seconds: float
         ) -> dict[str, float]:
    for index in range(3):  # warm-up (own keys and names): imports, caches, connections
        assert enroll(work / f"{name}-warm", keys[-1 - index], url, challenge, fingerprint,
                      1000 + index), f"{name}: warm-up enrollment failed"
    keys = keys[:-3]
    cpu_before = session_cpu_seconds(session_id)
    started = time.monotonic()
    deadline = started + max_seconds
    ok = failed = 0
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(lambda i=i: time.monotonic() < deadline and enroll(
            work / name, keys[i], url, challenge, fingerprint, i)) for i in range(len(keys))]
        for future in futures:
            if future.result():
                ok += 1
            else:
                failed += 1
    elapsed = time.monotonic() - started
    cpu = session_cpu_seconds(session_id) - cpu_before
    return {"ok": ok, "failed": failed, "seconds": elapsed, "rate": ok / elapsed,
            "cpu_ms": 1000 * cpu / max(ok, 1)}


def run(args: argparse.Namespace) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    scratch = Path(tempfile.mkdtemp(prefix="scep-bench-"))
    keys = make_keys(scratch / "keys", args.enrollments + 3)
    results: dict[str, dict[str, float]] = {}

    # micromdm scepserver: RSA CA in its depot, static challenge.
    depot = scratch / "depot"
    subprocess.run(["scepserver", "ca", "-init", "-depot", str(depot), "-key-password",
                    "benchpass", "-keySize", "2048"], check=True, capture_output=True)
    port = free_port()
    scep = subprocess.Popen(["scepserver", "-depot", str(depot), "-capass", "benchpass",
                             "-challenge", "bench-secret", "-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        time.sleep(1.0)
        results["micromdm scepserver"] = load(
            "scepserver", scratch, keys, f"http://127.0.0.1:{port}/scep", "bench-secret", None,
            args.clients, scep.pid, args.max_seconds)
    finally:
        scep.terminate()
        scep.wait(10)

    data_dir = scratch / "gatehouse-data"
    run_cli(["init"], data_dir)  # scepclient 2.1 sends SHA-1 + DES: the legacy switch on
    config_path = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["profiles"]["default"]["scep"] = {"accept_legacy_requests": True}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    server = GatehouseServer(data_dir, workers=2).start()
    try:
        challenge = run_cli(["challenge", "create", "default", "--uses",
                             str(args.enrollments + 10), "--ttl", "1d"],
                            server.data_dir).stdout.strip()
        fingerprint = run_cli(["scep", "ra"], server.data_dir).stdout.strip()
        assert server.process is not None
        results["gatehouse (--workers 2, SQLite)"] = load(
            "gatehouse", scratch, keys, f"{server.http_url}/scep", challenge, fingerprint,
            args.clients, server.process.pid, args.max_seconds)
    finally:
        server.stop()

    print(f"\n{args.clients} concurrent scepclient processes, {args.enrollments} enrollments "
          "per server (GetCACaps + GetCACert + PKCSReq each)\n")
    print("| server | enrollments | failed | enrollments/s | server CPU ms / enrollment |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['ok']:.0f} | {r['failed']:.0f} | {r['rate']:.1f} | "
              f"{r['cpu_ms']:.1f} |")
    failures = scratch / "gatehouse" / "failures.log", scratch / "scepserver" / "failures.log"
    for path in failures:
        if path.exists():
            print(f"\n{path.parent.name} failures (first lines):\n"
                  + path.read_text(errors="replace")[:600])
    shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--enrollments", type=int, default=120)
    parser.add_argument("--max-seconds", type=float, default=45.0)
    args = parser.parse_args()
    if os.environ.get("GATEHOUSE_BENCH_NETNS") != "1":
        env = {**os.environ, "GATEHOUSE_BENCH_NETNS": "1", "PYTHONPATH": str(REPO)}
        raise SystemExit(subprocess.run(["unshare", "-n", sys.executable, __file__,
                                         *sys.argv[1:]], env=env, check=False).returncode)
    run(args)


if __name__ == "__main__":
    main()
