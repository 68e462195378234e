"""Prometheus /metrics on a 2-worker server: counters summed over workers, shared gauges."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_admin_support import admin_client, create_token, init_data_dir
from tests.support.pki import csr_pem, make_csr
from tests.support.server import GatehouseServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    data_dir = tmp_path_factory.mktemp("metrics") / "gatehouse-data"
    init_data_dir(data_dir)
    gh = GatehouseServer(data_dir, workers=2).start()
    yield gh
    gh.stop()


def scrape(server: GatehouseServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    # A new connection each time: the kernel hands it to either worker.
    answer = httpx.get(f"{server.http_url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def test_metrics_count_every_worker_and_show_queue_and_backends(server: GatehouseServer) -> None:
    token = create_token(server.data_dir, "admin")
    with admin_client(server.https_url, server.root_pem, token) as api:
        for i in range(6):  # separate connections spread over both workers
            api.headers["Connection"] = "close"
            csr = csr_pem(make_csr(f"metrics-{i}", dns=[f"m{i}.example.test"])[0]).decode()
            assert api.post("/certificates", json={"csr": csr}).status_code == 201
        refused = api.post("/certificates", json={"csr": csr_pem(make_csr(
            "bad", dns=[f"x{i}.example.test" for i in range(101)])[0]).decode()})
        assert refused.status_code == 403
    for _ in range(4):  # every scrape, whichever worker answers, sees the whole server
        samples = scrape(server)
        assert value(samples, "gatehouse_certificates_issued_total", protocol="manual",
                     profile="default", backend="internal") == 6
        assert value(samples, "gatehouse_enrollment_requests_total", outcome="issued") == 6
        assert value(samples, "gatehouse_enrollment_requests_total",
                     outcome="policy-denied") == 1
        assert value(samples, "gatehouse_enrollment_duration_seconds_count",
                     protocol="manual") == 7
        assert value(samples, "gatehouse_backend_request_duration_seconds_count",
                     backend="internal", outcome="ok") == 6
        assert value(samples, "gatehouse_backend_up", backend="internal") == 1
        assert ("gatehouse_requests_open", frozenset({("state", "held")})) in samples
        assert value(samples, "gatehouse_http_requests_total", area="admin") >= 7
    pids = {p.name for p in (server.data_dir / "run" / "metrics").iterdir()}
    assert len(pids) == 1, "one directory per running server"
    files = list((server.data_dir / "run" / "metrics").glob("*/*.db"))
    assert len({f.name.rsplit("_", 1)[-1] for f in files}) == 2, "both workers wrote metrics"
