"""Configuration validation: bad files are refused with file, key and reason."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.config import database_url, load_config
from gateway.durations import parse_duration
from gateway.errors import ConfigError

GOOD = """
backends:
  internal: {type: internal}
profiles:
  default: {backend: internal}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gatehouse.yaml"
    path.write_text(text)
    return path


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.server.https == "127.0.0.1:8443"
    assert config.profiles["default"].validity.default == dt.timedelta(days=90)
    assert config.public_http_url() == "http://127.0.0.1:8080"


@pytest.mark.parametrize(("text", "message"), [
    (GOOD + "bogus: 1\n", "bogus: Extra inputs are not permitted"),
    (GOOD.replace("{backend: internal}", "{backend: internal, approvl: auto}"),
     "profiles.default.approvl"),
    (GOOD.replace("{type: internal}", "{type: nosuch}"), "unknown type 'nosuch'"),
    (GOOD.replace("{backend: internal}", "{backend: vault}"), "unknown backend 'vault'"),
    (GOOD + "server: {https: 'nohost'}\n", "server.https"),
    (GOOD.replace("{backend: internal}", "{backend: internal, validity: {default: 400d, max: 30d}}"),
     "validity.default is longer"),
    (GOOD.replace("{backend: internal}", "{backend: internal, validity: {default: soon}}"),
     "not a duration"),
    (GOOD.replace("{backend: internal}",
                  "{backend: internal, extended_key_usage: [nonsense]}"),
     "unknown extended key usage"),
    (GOOD.replace("{backend: internal}", "{backend: internal, sans: {dns: {allow: ['re:(']}}}"),
     "bad regex"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("key: [unclosed\n", "not valid YAML"),
])
def test_bad_config_is_refused_with_location(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_database_url_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", "postgresql://u@db:5432/gh")
    config = load_config(write(tmp_path, GOOD))
    assert database_url(config, tmp_path) == "postgresql+psycopg://u@db:5432/gh"


def test_relative_sqlite_path_is_in_data_dir(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert database_url(config, tmp_path) == f"sqlite:///{tmp_path}/gatehouse.db"


@pytest.mark.parametrize(("text", "seconds"), [("90d", 7776000), ("12h", 43200), ("30m", 1800),
                                               ("45s", 45), ("2w", 1209600), (60, 60)])
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds
