"""docker-compose.yml and the Dockerfile, checked by parsing (no Docker engine in CI)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def dockerfile() -> dict[str, list[str]]:
    """Instructions by keyword; continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.setdefault(keyword.upper(), []).append(rest.strip())
    return out


def exec_form(value: str) -> list[str]:
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def test_services_and_dependencies() -> None:
    services = compose()["services"]
    assert set(services) == {"gatehouse", "postgres", "openbao"}
    depends = services["gatehouse"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["openbao"]["condition"] == "service_healthy"
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check["retries"] >= 3 and check["interval"]


def test_gatehouse_builds_from_the_dockerfile_and_runs_the_readme_command() -> None:
    gatehouse = compose()["services"]["gatehouse"]
    build = gatehouse["build"]
    assert (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() == \
        (REPO / "Dockerfile").resolve()
    instructions = dockerfile()
    entrypoint = exec_form(instructions["ENTRYPOINT"][-1])
    assert entrypoint == ["gatehouse"]
    default_cmd = exec_form(instructions["CMD"][-1])
    assert default_cmd[0] == "up"
    command = gatehouse["command"]
    assert command[0] == "up", "the same `gatehouse up` as the README"
    readme = (REPO / "README.md").read_text()
    assert "gatehouse up" in readme
    # Listeners on all interfaces inside the container, the ports published.
    assert command[command.index("--https") + 1] == "0.0.0.0:8443"
    assert command[command.index("--http") + 1] == "0.0.0.0:8080"
    assert {"8443:8443", "8080:8080"} <= {str(p).split(":", 1)[-1] if str(p).count(":") == 2
                                          else str(p) for p in gatehouse["ports"]}
    # The project is installed into the image: every package the code lives in is copied.
    copied = " ".join(instructions["COPY"])
    for package in ("gateway", "protocols", "ca_backends", "migrations", "pyproject.toml"):
        assert package in copied
    assert any("pip install" in run for run in instructions["RUN"])


def test_environment_and_volumes() -> None:
    data = compose()
    gatehouse = data["services"]["gatehouse"]
    env = gatehouse["environment"]
    assert env["GATEHOUSE_DATA_DIR"] == "/data"
    url = env["GATEHOUSE_DATABASE_URL"]
    assert url.startswith("postgresql://") and "@postgres:5432/" in url
    postgres = data["services"]["postgres"]
    pg_env = postgres["environment"]
    user, password_db = url.removeprefix("postgresql://").split(":", 1)
    assert user == pg_env["POSTGRES_USER"]
    assert password_db.split("@")[0] == pg_env["POSTGRES_PASSWORD"]
    assert url.rsplit("/", 1)[1] == pg_env["POSTGRES_DB"]
    assert any(str(v).endswith(":/data") for v in gatehouse["volumes"]), "the data dir persists"
    named = {str(v).split(":")[0] for v in postgres["volumes"]}
    assert named <= set(data.get("volumes", {})), "postgres data lives in a named volume"
    dockerfile_env = " ".join(dockerfile().get("ENV", []))
    assert "GATEHOUSE_DATA_DIR=/data" in dockerfile_env
    openbao = data["services"]["openbao"]
    assert "-dev" in openbao["command"]
    assert any(str(p).startswith("127.0.0.1:") for p in openbao.get("ports", [])), \
        "the dev-mode OpenBao (root token) is only published on loopback"


def test_console_templates_and_assets_ship_in_the_image() -> None:
    """`pip install .` in the Dockerfile copies only Python files unless package-data
    names the console's templates and static files."""
    import fnmatch
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"].get("package-data", {}).get("gateway", [])
    for asset in [*(REPO / "gateway" / "console" / "templates").iterdir(),
                  *(REPO / "gateway" / "console" / "static").iterdir()]:
        relative = str(asset.relative_to(REPO / "gateway"))
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), \
            f"pyproject [tool.setuptools.package-data] gateway: add a pattern for {relative}"
