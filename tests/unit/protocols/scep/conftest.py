from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ra import RaIdentity, ensure_ra
from gateway.runtime import Gateway
from gateway.setup import initialize


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A real in-process gateway (internal CA, SQLite, default profile with its RA)."""
    data_dir: Path = tmp_path_factory.mktemp("scep-unit") / "data"
    initialize(data_dir, https="127.0.0.1:1", http="127.0.0.1:2")
    gw = Gateway.from_data_dir(data_dir)
    yield gw
    gw.db.dispose()


@pytest.fixture(scope="module")
def ra(gateway: Gateway) -> RaIdentity:
    return ensure_ra(gateway.config, gateway.data_dir, "default")
