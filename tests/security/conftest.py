"""Shared set-up for the attack tests: a real ``gatehouse up`` on a configured data dir.

Every test in this package drives the real server over real sockets as an attacker
would, with a positive control beside each refusal (the legitimate request succeeds), so
a gateway that refuses everything fails these tests too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e

ConfigEdit = Callable[[dict[str, Any], Path], None]


def init_data_dir(data_dir: Path, edit: ConfigEdit | None = None) -> Path:
    """``gatehouse init`` then let ``edit(config, data_dir)`` change gatehouse.yaml."""
    run_cli(["init"], data_dir)
    if edit is not None:
        path = data_dir / "gatehouse.yaml"
        config = yaml.safe_load(path.read_text())
        edit(config, data_dir)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return data_dir


def start_configured(tmp_path_factory: pytest.TempPathFactory, name: str,
                     edit: ConfigEdit | None = None, *, env: dict[str, str] | None = None,
                     setup: Callable[[Path], None] | None = None) -> GatehouseServer:
    """A fresh data dir, ``gatehouse init``, the config edit, ``setup(data_dir)`` (CLI
    commands such as ``user add``), then ``gatehouse up`` on loopback ports."""
    data_dir = init_data_dir(tmp_path_factory.mktemp(name) / "gatehouse-data", edit)
    if setup is not None:
        setup(data_dir)
    return GatehouseServer(data_dir, env=env).start()


def profile_like_default(config: dict[str, Any], name: str, **overrides: Any) -> dict[str, Any]:
    """Add profile ``name`` as a copy of the default profile with ``overrides``."""
    profile = {**config["profiles"][config.get("default_profile", "default")], **overrides}
    config["profiles"][name] = profile
    return profile
