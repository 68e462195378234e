"""Helpers for the admin API, console and multi-instance tests (no tests here)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.server import run_cli

# A profile that holds every request for an operator, and one with a tight rate limit.
EXTRA_PROFILES: dict[str, Any] = {
    "approval": {"backend": "internal", "approval": "manual",
                 "sans": {"dns": {"allow": ["**"]}}, "validity": {"default": "30d"}},
    "limited": {"backend": "internal", "sans": {"dns": {"allow": ["**"]}},
                "rate_limit": {"requests": 3, "window": "1h"}},
}


def init_data_dir(data_dir: Path, *, profiles: dict[str, Any] | None = None,
                  database_url: str | None = None) -> None:
    """``gatehouse init`` then add profiles to gatehouse.yaml, as an operator would."""
    env = {"GATEHOUSE_DATABASE_URL": database_url} if database_url else None
    run_cli(["init"], data_dir, env=env)
    path = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(path.read_text())
    config["profiles"].update(profiles if profiles is not None else EXTRA_PROFILES)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def create_token(data_dir: Path, role: str, name: str | None = None,
                 env: dict[str, str] | None = None) -> str:
    args = ["token", "create", "--role", role] + (["--name", name] if name else [])
    token = run_cli(args, data_dir, env=env).stdout.strip()
    assert token.startswith("gh_"), token
    return token


def admin_client(base_url: str, root_pem: Path, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url + "/admin/api", verify=tls_context(root_pem),
                        headers=headers, timeout=60)


def tls_context(root_pem: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(root_pem))
