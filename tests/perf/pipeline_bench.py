"""Benchmark: certificates per second through the pipeline vs the bare signing cost.

Run:  python tests/perf/pipeline_bench.py [--count 2000] [--postgres URL]

Measures, in one run on one machine (ratios hold on noisy machines, absolute times
don't):
  1. bare `cryptography` sign: a CertificateBuilder with the same subject, SANs and
     extensions, signed by an EC P-256 key (the floor any Python CA pays);
  2. the internal CA backend's ``issue`` alone (building the certificate from a Decision);
  3. the whole pipeline (``EnrollmentService.submit``): persist, policy, issue, record,
     audit, on SQLite (and on PostgreSQL with --postgres).
CSRs are made before timing starts.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.model import (
    EnrollmentRequest,
    Operation,
    Principal,
    PrincipalKind,
    Protocol,
)
from gateway.runtime import Gateway
from gateway.setup import initialize
from tests.support.pki import csr_der, make_csr


def bare_sign(count: int, csrs: list[x509.CertificateSigningRequest]) -> float:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    now = dt.datetime.now(dt.UTC)
    start = time.process_time()
    for i in range(count):
        csr = csrs[i % len(csrs)]
        (x509.CertificateBuilder()
         .subject_name(csr.subject).issuer_name(ca_name).public_key(csr.public_key())
         .serial_number(secrets.randbits(127) | 1 << 126)
         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                      False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
         .add_extension(x509.SubjectAlternativeName(
             [x509.DNSName(f"host{i}.bench.test"), x509.IPAddress(ipaddress.ip_address("192.0.2.1"))]),
             critical=False)
         .sign(ca_key, hashes.SHA256()))
    return time.process_time() - start


def requests_for(csrs: list[x509.CertificateSigningRequest], tag: str) -> list[EnrollmentRequest]:
    return [EnrollmentRequest(
        protocol=Protocol.MANUAL, operation=Operation.ENROLL, profile="default", csr=csr,
        csr_der=csr_der(csr), principal=Principal(PrincipalKind.ADMIN, "bench"),
        transaction_id=f"{tag}-{i}") for i, csr in enumerate(csrs)]


async def backend_issue(gateway: Gateway, requests: list[EnrollmentRequest]) -> float:
    from gateway.policy import Facts

    backend = gateway.backends.get("internal")
    decisions = [gateway.policy.decide(r, Facts(now=gateway.clock.now())).decision for r in requests]
    start = time.process_time()
    for request, decision in zip(requests, decisions, strict=True):
        await backend.issue(request, decision)
    return time.process_time() - start


async def pipeline(gateway: Gateway, requests: list[EnrollmentRequest]) -> float:
    start = time.process_time()
    for request in requests:
        result = await gateway.enrollment.submit(request)
        assert result.certificate is not None
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--postgres", help="also run the pipeline on this PostgreSQL URL "
                                           "(an empty database or schema)")
    args = parser.parse_args()
    csrs = [make_csr(f"host{i}.bench.test", dns=[f"host{i}.bench.test"], ips=["192.0.2.1"])[0]
            for i in range(min(args.count, 500))]
    rows: list[tuple[str, float]] = []
    rows.append(("bare cryptography sign (EC P-256 CA)", bare_sign(args.count, csrs)))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        initialize(data_dir, https="127.0.0.1:8443", http="127.0.0.1:8080")
        gateway = Gateway.from_data_dir(data_dir)
        many = [csrs[i % len(csrs)] for i in range(args.count)]
        rows.append(("internal CA backend issue()",
                     asyncio.run(backend_issue(gateway, requests_for(many, "b")))))
        rows.append(("pipeline submit(), SQLite (persist+policy+issue+record+audit)",
                     asyncio.run(pipeline(gateway, requests_for(many, "s")))))
        asyncio.run(gateway.close())
        if args.postgres:
            import os

            os.environ["GATEHOUSE_DATABASE_URL"] = args.postgres
            from gateway.config import config_path, database_url, load_config
            from gateway.store.migrate import upgrade

            config = load_config(config_path(data_dir))
            upgrade(database_url(config, data_dir))
            gateway = Gateway.from_data_dir(data_dir)
            rows.append(("pipeline submit(), PostgreSQL",
                         asyncio.run(pipeline(gateway, requests_for(many, "p")))))
            asyncio.run(gateway.close())
    bare = rows[0][1]
    print(f"\n{args.count} certificates each, one process, one core\n")
    print("| path | certs/s | µs per cert | x bare sign |")
    print("|---|---:|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {args.count / seconds:,.0f} | {seconds / args.count * 1e6:,.0f} "
              f"| {seconds / bare:.1f} |")


if __name__ == "__main__":
    main()
