"""The README's configuration examples are valid configurations (docs stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL)
          if "profiles:" in b]


def test_readme_has_config_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS)
def test_readme_config_example_validates(block: str, tmp_path: Path) -> None:
    path = tmp_path / "gatehouse.yaml"
    path.write_text(block)
    config = load_config(path)
    assert config.profiles
