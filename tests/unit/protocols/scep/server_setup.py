"""A gatehouse server with extra SCEP profiles, for the SCEP e2e and interop tests."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.server import GatehouseServer, free_port, run_cli

STATIC_ENV = "GH_TEST_SCEP_STATIC"
STATIC_CHALLENGE = "static-challenge-for-tests"
WEBHOOK_ALLOW = "hook-allow"
WEBHOOK_SECRET_ENV = "GH_TEST_SCEP_WEBHOOK_KEY"
WEBHOOK_SECRET = "webhook-signing-key-for-tests"


def _profile(**scep: Any) -> dict[str, Any]:
    return {"backend": "internal", "scep": scep}


def start_scep_server(data_dir: Path, *, webhook_port: int | None = None,
                      workers: int = 1, legacy_clients: bool = False) -> GatehouseServer:
    """``gatehouse init``, add SCEP profiles to the config, then ``gatehouse up``.

    ``legacy_clients``: every profile but ``strict`` accepts SHA-1 / DES requests (micromdm
    scepclient 2.1 sends nothing else; the default refuses them, issue #10 rule 12).
    """
    run_cli(["init"], data_dir)
    path = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(path.read_text())
    profiles = config["profiles"]
    profiles["manual"] = {**_profile(challenge="none"), "approval": "manual"}
    profiles["static"] = _profile(challenge="static", static_challenge_env=STATIC_ENV)
    profiles["intune"] = _profile(issuing_ca_only=True)
    profiles["strict"] = _profile(accept_legacy_requests=False, max_clock_skew_seconds=300)
    profiles["legacy"] = _profile(legacy_algorithms=True)
    profiles["tolerant"] = _profile(accept_legacy_requests=True)
    profiles["renewals"] = {**_profile(), "renewal": {"expired_grace": "0s"}}
    if webhook_port is not None:
        profiles["hook"] = _profile(challenge="webhook",
                                    webhook_url=f"http://127.0.0.1:{webhook_port}/validate",
                                    webhook_allow_http=True, webhook_timeout=5,
                                    webhook_secret_env=WEBHOOK_SECRET_ENV)
    if legacy_clients:
        for name, profile in profiles.items():
            if name != "strict":
                profile.setdefault("scep", {})["accept_legacy_requests"] = True
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return GatehouseServer(data_dir, workers=workers,
                           env={STATIC_ENV: STATIC_CHALLENGE,
                                WEBHOOK_SECRET_ENV: WEBHOOK_SECRET}).start()


@contextmanager
def webhook_server() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """A validation webhook: allows the challenge ``hook-allow``, refuses others."""
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            allow = body.get("challenge") == WEBHOOK_ALLOW
            answer = json.dumps({"allow": allow, "reason": "" if allow else "not on the list"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, seen
    finally:
        server.shutdown()
        server.server_close()


def http_get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def http_post(url: str, body: bytes,
              content_type: str = "application/x-pki-message") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def challenge(data_dir: Path, profile: str = "default", *extra: str) -> str:
    result = run_cli(["challenge", "create", profile, *extra], data_dir)
    return result.stdout.strip()
