from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import GatehouseServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    """``gatehouse up`` on a fresh data directory, as a new user runs it."""
    data_dir = tmp_path_factory.mktemp("e2e") / "gatehouse-data"
    gh = GatehouseServer(data_dir).start()
    yield gh
    gh.stop()


def openssl(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    import subprocess

    result = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd,
                            timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr
