"""Validation state lives in the database: a server killed mid-validation (SIGKILL) leaves
the challenge ``processing`` and the next server process finishes it."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.test_acme import Http01, _Handler
from tests.support.dns_server import DnsTestServer
from tests.support.server import GatehouseServer, free_port, run_cli
from tests.unit.protocols.acme.signer import Client, Key

pytestmark = pytest.mark.e2e


def test_validation_survives_a_killed_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "gatehouse-data"
    run_cli(["init"], data_dir)
    path = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(path.read_text())
    config["acme"] = {"validation_timeout": "1s", "validation_attempts": 20,
                      "validation_retry_delay": "1s"}
    path.write_text(yaml.safe_dump(config))
    dns = DnsTestServer().start()
    web = Http01(("127.0.0.1", 0), _Handler)
    web.tokens = {}
    threading.Thread(target=web.serve_forever, daemon=True).start()
    env = {"GATEHOUSE_ACME_HTTP01_PORT": str(web.server_address[1]),
           "GATEHOUSE_ACME_TLSALPN01_PORT": str(free_port()),
           "GATEHOUSE_ACME_DNS_RESOLVER": dns.address,
           "GATEHOUSE_ACME_VALIDATION_ALLOW": "127.0.0.0/8,::1/128"}
    key = Key()
    first = GatehouseServer(data_dir, env=env).start()
    second = None
    try:
        context = ssl.create_default_context(cafile=str(first.root_pem))
        with httpx.Client(verify=context, timeout=30) as http:
            client = Client(http, f"{first.https_url}/acme/directory", key)
            client.register()
            order = client.post(client.directory["newOrder"], {
                "identifiers": [{"type": "dns", "value": "crash.example.test"}]}).json()
            authz_path = order["authorizations"][0].removeprefix(first.https_url)
            authz = client.post(order["authorizations"][0], None).json()
            challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
            web.tokens[challenge["token"]] = "not-yet.right"  # attempts fail and are retried
            assert client.post(challenge["url"], {}).json()["status"] == "processing"
            time.sleep(0.5)
            first.kill()  # no cleanup: the lease and the retry schedule stay in the database
        web.tokens[challenge["token"]] = client.key_authorization(challenge["token"])
        second = GatehouseServer(data_dir, env=env).start()
        with httpx.Client(verify=context, timeout=30) as http:
            client = Client(http, f"{second.https_url}/acme/directory", key)
            assert client.register().status_code == 200  # the same account
            deadline = time.monotonic() + 40
            status = "processing"
            while time.monotonic() < deadline and status != "valid":
                status = client.post(second.https_url + authz_path, None).json()["status"]
                time.sleep(0.3)
            assert status == "valid", second.log()[-2000:]
    finally:
        first.stop()
        if second is not None:
            second.stop()
        web.shutdown()
        dns.stop()
