"""ACME benchmark: Gatehouse (``--workers 2``, SQLite) and pebble under the same load.

N concurrent clients each run full orders (newOrder → authz → http-01 served by this
script → challenge → poll → finalize → poll → download) for a fixed time against each
server in turn.  Reported: completed orders/s, p50/p99 order latency, and the server's own
CPU time per order (utime+stime of its whole process group from /proc; the fair figure on
a small box where this client competes for the same cores).

    PYTHONPATH=. python tests/perf/acme_bench.py --clients 8 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.server import GatehouseServer, free_port
from tests.unit.protocols.acme.signer import Key, b64, jws

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the http-01 responder -----------------------------------------------------------------

TOKENS: dict[str, str] = {}


async def http01_server(port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                body = TOKENS.get(path.rsplit("/", 1)[-1], "").encode()
                status = b"200 OK" if body else b"404 Not Found"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


# -- CPU accounting ---------------------------------------------------------------------------


def group_cpu_seconds(pgid: int) -> float:
    """utime+stime of every live process in the process group (plus reaped children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 (pgrp), after state and ppid
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / CLK_TCK


# -- one ACME client --------------------------------------------------------------------------


class AcmeClient:
    def __init__(self, http: httpx.AsyncClient, directory: dict[str, str]) -> None:
        self.http = http
        self.directory = directory
        self.key = Key("ES256")
        self.kid: str | None = None
        self.nonce: str | None = None

    requests = 0

    async def post(self, url: str, payload: Any) -> httpx.Response:
        AcmeClient.requests += 1
        for _ in range(3):
            if self.nonce is None:
                self.nonce = (await self.http.head(self.directory["newNonce"])).headers["Replay-Nonce"]
            body = jws(self.key, url, payload, nonce=self.nonce, kid=self.kid)
            self.nonce = None
            response = await self.http.post(url, content=json.dumps(body).encode(),
                                            headers={"Content-Type": "application/jose+json"})
            self.nonce = response.headers.get("Replay-Nonce")
            if response.status_code == 400 and "badNonce" in response.text:
                continue
            return response
        raise RuntimeError("badNonce three times")

    async def register(self) -> None:
        response = await self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True})
        assert response.status_code in (200, 201), response.text
        self.kid = response.headers["Location"]

    async def poll(self, url: str, until: set[str]) -> dict[str, Any]:
        for _ in range(600):
            body: dict[str, Any] = (await self.post(url, None)).json()
            if body.get("status") in until:
                return body
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{url} never reached {until}")

    async def order(self, name: str, csr_der: bytes) -> None:
        response = await self.post(self.directory["newOrder"],
                                   {"identifiers": [{"type": "dns", "value": name}]})
        assert response.status_code == 201, response.text
        order_url, order = response.headers["Location"], response.json()
        authz_url = order["authorizations"][0]
        authz = (await self.post(authz_url, None)).json()
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        TOKENS[challenge["token"]] = f"{challenge['token']}.{self.key.thumbprint()}"
        await self.post(challenge["url"], {})
        authz = await self.poll(authz_url, {"valid", "invalid"})
        assert authz["status"] == "valid", authz
        final = (await self.post(order["finalize"], {"csr": b64(csr_der)})).json()
        if final.get("status") != "valid":
            final = await self.poll(order_url, {"valid", "invalid"})
        assert final["status"] == "valid", final
        cert = await self.post(final["certificate"], None)
        assert cert.status_code == 200 and b"BEGIN CERTIFICATE" in cert.content
        TOKENS.pop(challenge["token"], None)


def make_csr(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.DER)


async def run_load(directory_url: str, root: Path, clients: int, seconds: float, pgid: int,
                   label: str) -> dict[str, float]:
    context = ssl.create_default_context(cafile=str(root))
    limits = httpx.Limits(max_connections=clients * 2)
    async with httpx.AsyncClient(verify=context, timeout=60, limits=limits) as http:
        directory = (await http.get(directory_url)).json()
        actors = [AcmeClient(http, directory) for _ in range(clients)]
        await asyncio.gather(*(a.register() for a in actors))
        # Warm-up order per client (not measured): first-use costs, connection setup.
        await asyncio.gather(*(a.order(f"warm{i}.{label}.bench.test", make_csr(f"warm{i}.{label}.bench.test"))
                               for i, a in enumerate(actors)))
        latencies: list[float] = []
        counter = 0
        deadline = time.monotonic() + seconds
        csrs = [make_csr(f"n{i}.{label}.bench.test") for i in range(64)]

        async def worker(actor: AcmeClient) -> None:
            nonlocal counter
            while time.monotonic() < deadline:
                counter += 1
                index = counter
                started = time.monotonic()
                await actor.order(f"n{index % 64}.{label}.bench.test", csrs[index % 64])
                latencies.append(time.monotonic() - started)

        cpu0, wall0 = group_cpu_seconds(pgid), time.monotonic()
        requests0 = AcmeClient.requests
        await asyncio.gather(*(worker(a) for a in actors))
        cpu1, wall1 = group_cpu_seconds(pgid), time.monotonic()
        requests = AcmeClient.requests - requests0
    latencies.sort()
    done = len(latencies)
    return {"orders": done, "orders_per_s": done / (wall1 - wall0),
            "p50_ms": 1000 * latencies[done // 2],
            "p99_ms": 1000 * latencies[min(done - 1, int(done * 0.99))],
            "cpu_ms_per_order": 1000 * (cpu1 - cpu0) / done,
            "requests_per_order": requests / done}


# -- the two servers ---------------------------------------------------------------------------


def tls_for_pebble(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a 127.0.0.1/localhost server certificate for pebble's WFE."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench pebble root")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "root.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def wait_tls(port: int, root: Path, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context(cafile=str(root))
    while time.monotonic() < deadline:
        try:
            httpx.get(f"https://127.0.0.1:{port}{path}", verify=context, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on {port}")


async def bench(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    work = Path(tempfile.mkdtemp(prefix="acme-bench-"))
    http01_port = free_port()
    responder = await http01_server(http01_port)
    results = []
    # One DNS for both servers: pebble-challtestsrv answers every A query with 127.0.0.1.
    dns_port, mgmt = free_port(), free_port()
    challtest = subprocess.Popen(
        ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-defaultIPv4", "127.0.0.1",
         "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", "",
         "-management", f"127.0.0.1:{mgmt}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Gatehouse: two workers, SQLite, validating against this script's responder.
        server = GatehouseServer(work / "gatehouse-data", workers=args.workers, env={
            "GATEHOUSE_ACME_HTTP01_PORT": str(http01_port),
            "GATEHOUSE_ACME_TLSALPN01_PORT": str(free_port()),
            "GATEHOUSE_ACME_DNS_RESOLVER": f"127.0.0.1:{dns_port}",
            "GATEHOUSE_ACME_VALIDATION_ALLOW": "127.0.0.0/8,::1/128"})
        server.start()
        try:
            assert server.process is not None
            results.append((f"gatehouse (--workers {args.workers}, SQLite)", await run_load(
                f"{server.https_url}/acme/directory", server.root_pem, args.clients,
                args.seconds, server.process.pid, "gh")))
        finally:
            server.stop()
        # pebble with pebble-challtestsrv as its DNS.
        root, cert, key = tls_for_pebble(work)
        port = free_port()
        config = work / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{free_port()}",
            "certificate": str(cert), "privateKey": str(key), "httpPort": http01_port,
            "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
        pebble = subprocess.Popen(
            ["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
            stdout=open(work / "pebble.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
                 "PEBBLE_AUTHZREUSE": "0"})
        try:
            wait_tls(port, root, "/dir")
            results.append(("pebble", await run_load(f"https://127.0.0.1:{port}/dir", root,
                                                     args.clients, args.seconds, pebble.pid, "pb")))
        finally:
            os.killpg(pebble.pid, signal.SIGTERM)
            pebble.wait(10)
    finally:
        os.killpg(challtest.pid, signal.SIGTERM)
        challtest.wait(10)
        responder.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    for tool in ("pebble", "pebble-challtestsrv"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install pebble)")
    results = asyncio.run(bench(args))
    print(f"\n{args.clients} concurrent clients, {args.seconds:g}s each, full http-01 orders\n")
    print(f"| {'server':34} | orders | orders/s | p50 ms | p99 ms | requests/order "
          "| server CPU ms/order |")
    print(f"|{'-' * 36}|-------:|---------:|-------:|-------:|---------------:|--------------------:|")
    for name, r in results:
        print(f"| {name:34} | {r['orders']:6.0f} | {r['orders_per_s']:8.1f} | {r['p50_ms']:6.0f} "
              f"| {r['p99_ms']:6.0f} | {r['requests_per_order']:14.1f} "
              f"| {r['cpu_ms_per_order']:19.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
