"""Three ``gatehouse serve`` processes sharing one PostgreSQL schema behind a round-robin
TCP proxy behave as one gateway: no duplicate serials, no lost requests, idempotent
retries across instances, rate limits shared, approvals seen everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from sqlalchemy import create_engine, func, select

from gateway.store.tables import CertificateRow, RequestRow
from tests.e2e.test_admin_support import create_token, init_data_dir, tls_context
from tests.support.dns_server import DnsTestServer
from tests.support.pki import csr_pem, make_csr
from tests.support.server import GatehouseServer, free_port
from tests.support.tcp_proxy import RoundRobinProxy

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

INSTANCES = 3
ENROLLMENTS = 45


@dataclass
class Cluster:
    servers: list[GatehouseServer]
    proxy: RoundRobinProxy
    database_url: str
    token: str
    root_pem: Path
    http01_port: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.proxy.port}/admin/api"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_schema_url: str
            ) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("instances") / "gatehouse-data"
    dns = DnsTestServer().start()  # every name is 127.0.0.1, for ACME validation
    http01_port = free_port()
    env = {"GATEHOUSE_DATABASE_URL": postgres_schema_url,
           "GATEHOUSE_ACME_HTTP01_PORT": str(http01_port),
           "GATEHOUSE_ACME_DNS_RESOLVER": dns.address,
           "GATEHOUSE_ACME_VALIDATION_ALLOW": "127.0.0.0/8,::1/128"}
    init_data_dir(data_dir, database_url=postgres_schema_url)  # also runs the migrations
    servers = []
    try:
        for _ in range(INSTANCES):  # one data dir (config, CA) shared; one database
            servers.append(GatehouseServer(data_dir, command="serve", env=env).start())
        proxy = RoundRobinProxy([("127.0.0.1", s.https_port) for s in servers]).start()
        token = create_token(data_dir, "admin", "cluster", env=env)
        yield Cluster(servers, proxy, postgres_schema_url, token, servers[0].root_pem,
                      http01_port)
        proxy.stop()
    finally:
        for server in servers:
            server.stop()
        dns.stop()


def post(cluster: Cluster, path: str, body: dict[str, object] | None = None) -> httpx.Response:
    """One request on a new connection, so the proxy sends it to the next instance."""
    with httpx.Client(verify=tls_context(cluster.root_pem), timeout=120,
                      headers={"Authorization": f"Bearer {cluster.token}"}) as client:
        return client.post(cluster.url + path, json=body or {})


def enroll_body(cn: str, profile: str = "default",
                transaction_id: str | None = None) -> dict[str, object]:
    csr = csr_pem(make_csr(cn, dns=[f"{cn}.example.test"])[0]).decode()
    return {"profile": profile, "csr": csr, "transaction_id": transaction_id or str(uuid.uuid4())}


def test_concurrent_enrollments_through_all_instances(cluster: Cluster) -> None:
    bodies = [enroll_body(f"node-{i}") for i in range(ENROLLMENTS)]
    with ThreadPoolExecutor(max_workers=9) as pool:
        answers = list(pool.map(lambda b: post(cluster, "/certificates", b), bodies))
    assert [a.status_code for a in answers] == [201] * ENROLLMENTS, \
        [a.text for a in answers if a.status_code != 201][:3]
    serials = [a.json()["certificate"]["serial"] for a in answers]
    assert len(set(serials)) == ENROLLMENTS, "no duplicate serials"
    assert all(cluster.proxy.connections[i] >= ENROLLMENTS // INSTANCES - 2
               for i in range(INSTANCES)), cluster.proxy.connections

    engine = create_engine(cluster.database_url)
    try:
        with engine.connect() as db:
            ids = [a.json()["request_id"] for a in answers]
            states = dict(db.execute(select(RequestRow.id, RequestRow.state)
                                     .where(RequestRow.id.in_(ids))).all())
            assert states == dict.fromkeys(ids, "issued"), "no lost request"
            stored = db.execute(select(CertificateRow.serial, func.count())
                                .where(CertificateRow.serial.in_(serials))
                                .group_by(CertificateRow.serial)).all()
            assert sorted(s for s, _ in stored) == sorted(serials)
            assert {n for _, n in stored} == {1}, "each certificate in the inventory once"
    finally:
        engine.dispose()

    # A client retrying the same transaction on another instance gets the same request.
    again = post(cluster, "/certificates", bodies[0])
    assert again.status_code == 201
    assert again.json()["request_id"] == answers[0].json()["request_id"]
    assert again.json()["certificate"]["serial"] == serials[0]


def test_rate_limit_holds_across_instances(cluster: Cluster) -> None:
    # 'limited' allows 3 requests per hour per principal: consecutive requests land on
    # different instances, which share the counters through the database.
    codes = [post(cluster, "/certificates", enroll_body(f"rl-{i}", "limited")).status_code
             for i in range(5)]
    assert codes == [201, 201, 201, 429, 429]


def test_rate_limit_holds_under_concurrency(cluster: Cluster) -> None:
    other = create_token(cluster.servers[0].data_dir, "admin", "burst",
                         env={"GATEHOUSE_DATABASE_URL": cluster.database_url})
    burst = Cluster(cluster.servers, cluster.proxy, cluster.database_url, other,
                    cluster.root_pem)
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda i: post(burst, "/certificates",
                                             enroll_body(f"burst-{i}", "limited")).status_code,
                              range(8)))
    assert set(codes) <= {201, 429}
    # Concurrent requests may all be refused (each counts the others), never over-allowed.
    assert codes.count(201) <= 3, codes


def test_held_request_approved_on_another_instance(cluster: Cluster) -> None:
    """An EST request held on one instance is approved through another and collected
    from a third."""
    import base64

    from tests.support.pki import csr_der

    assert post(cluster, "/users", {"profile": "approval", "name": "dev",
                                    "password": "dev-password"}).status_code == 201
    body = base64.encodebytes(csr_der(make_csr("held-cluster")[0]))
    est_url = f"https://127.0.0.1:{cluster.proxy.port}/.well-known/est/approval/simpleenroll"

    def est() -> httpx.Response:
        with httpx.Client(verify=tls_context(cluster.root_pem), auth=("dev", "dev-password"),
                          timeout=60) as client:
            return client.post(est_url, content=body,
                               headers={"content-type": "application/pkcs10"})

    assert est().status_code == 202
    with httpx.Client(verify=tls_context(cluster.root_pem),
                      headers={"Authorization": f"Bearer {cluster.token}"}) as client:
        held = client.get(cluster.url + "/requests", params={"state": "held"}).json()["items"]
    request_id = next(item["id"] for item in held if item["subject"] == "CN=held-cluster")
    assert post(cluster, f"/requests/{request_id}/approve").json()["state"] == "issued"
    assert est().status_code == 200


def test_acme_client_completes_orders_across_instances(cluster: Cluster, tmp_path: Path) -> None:
    """lego (Debian) through a proxy that closes each connection once it has been answered
    and idle, so the client's next request goes to the next instance: nonces, accounts,
    orders and authorizations live in the shared database."""
    lego = shutil.which("lego")
    assert lego, "apt-get install lego"
    proxy = RoundRobinProxy([("127.0.0.1", s.https_port) for s in cluster.servers],
                            idle_close=0.15).start()
    try:
        base = [lego, "--server", f"https://127.0.0.1:{proxy.port}/acme/directory",
                "--email", "ops@example.test", "--accept-tos", "--path", str(tmp_path / "lego"),
                "--http", "--http.port", f"127.0.0.1:{cluster.http01_port}"]
        env = {**os.environ, "LEGO_CA_CERTIFICATES": str(cluster.root_pem)}
        for domains, command in ((["acme-a.example.test", "acme-b.example.test"], ["run"]),
                                 (["acme-a.example.test", "acme-b.example.test"],
                                  ["renew", "--days", "100000", "--no-random-sleep"])):
            args = [*base, *[f"--domains={d}" for d in domains], *command]
            done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=180,
                                  check=False)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        used = [proxy.connections[i] for i in range(INSTANCES)]
        assert all(n >= 2 for n in used), f"connections per instance: {used}"
        cert = x509.load_pem_x509_certificate(
            (tmp_path / "lego" / "certificates" / "acme-a.example.test.crt").read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(names.get_values_for_type(x509.DNSName)) == {"acme-a.example.test",
                                                               "acme-b.example.test"}
    finally:
        proxy.stop()
