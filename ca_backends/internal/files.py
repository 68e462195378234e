"""The internal CA's directory: layout, owner-only file writes, passphrase, issuers.json.

```
<directory>/            0700; every file 0600
  root.pem  root.key    root certificate; encrypted PKCS #8 key
  issuers.json          [{"id": "1", "active_from": "<ISO 8601>"}, ...]
  issuers/<id>/cert.pem issuing CA generation <id>
  issuers/<id>/key.pem  its encrypted key (0600)
```
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ca_backends.internal.config import InternalCaConfig
from gateway.errors import ConfigError

PRIVATE_FILE_MODE = 0o600
# Certificates are public, yet every file in the data directory is owner-only
# (docs/security.md, rule 8): clients get them over the wire (GetCACert, /cacerts, AIA).
PUBLIC_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


class CaSetupError(ConfigError):
    """The internal CA's files are missing, unreadable, inconsistent or would be overwritten.

    Raised by set-up and start-up code only, before anything serves requests; the message
    names the path and what to do.  A ConfigError, so start-up and the CLI report it the
    same way as a bad configuration file.
    """


@dataclass(frozen=True, slots=True)
class CaLayout:
    """Where each file of one internal CA lives."""

    directory: Path

    @property
    def root_cert(self) -> Path:
        return self.directory / "root.pem"

    @property
    def root_key(self) -> Path:
        return self.directory / "root.key"

    @property
    def issuers_json(self) -> Path:
        return self.directory / "issuers.json"

    def issuer_dir(self, issuer_id: str) -> Path:
        return self.directory / "issuers" / issuer_id

    def issuer_cert(self, issuer_id: str) -> Path:
        return self.issuer_dir(issuer_id) / "cert.pem"

    def issuer_key(self, issuer_id: str) -> Path:
        return self.issuer_dir(issuer_id) / "key.pem"

    def exists(self) -> bool:
        """True when any file that defines a CA is present (the passphrase file is not)."""
        return any(p.exists() for p in (self.root_cert, self.root_key, self.issuers_json))


@dataclass(frozen=True, slots=True)
class IssuerRecord:
    """One entry of issuers.json: a generation of issuing CA and when it takes over."""

    id: str
    active_from: dt.datetime


def resolve(data_dir: Path, value: str) -> Path:
    """A configured path: absolute as given, else relative to the data directory."""
    path = Path(value)
    return path if path.is_absolute() else data_dir / path


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it owner-only, even if it existed."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with exactly ``mode`` (whatever the umask).

    A temporary file in the same directory is renamed over the target, so readers (and a
    crash) see the old content or the new, never half a key.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    done = False
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CaSetupError(f"cannot read {path}: {exc.strerror}") from exc


def ensure_passphrase(path: Path) -> bytes:
    """Return the passphrase stored in ``path``, creating a random one (0600) if missing.

    The new passphrase is ``secrets.token_urlsafe(32)`` (256 bits).
    """
    make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return _passphrase_from_file(path)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)
        passphrase = secrets.token_urlsafe(32).encode("ascii")
        handle.write(passphrase + b"\n")
    return passphrase


def read_passphrase(
    config: InternalCaConfig, data_dir: Path, environ: Mapping[str, str] | None = None
) -> bytes:
    """The CA key passphrase: ``$<passphrase_env>`` when set, else ``passphrase_file``."""
    env = os.environ if environ is None else environ
    value = env.get(config.passphrase_env)
    if value:
        return value.encode("utf-8")
    path = resolve(data_dir, config.passphrase_file)
    if not path.exists():
        raise CaSetupError(f"no CA passphrase: set ${config.passphrase_env} or create {path}")
    return _passphrase_from_file(path)


def _passphrase_from_file(path: Path) -> bytes:
    passphrase = read_file(path).rstrip(b"\r\n")
    if not passphrase:
        raise CaSetupError(f"the CA passphrase file {path} is empty")
    return passphrase


def read_issuer_records(layout: CaLayout) -> list[IssuerRecord]:
    """issuers.json, sorted by generation."""
    try:
        raw = json.loads(read_file(layout.issuers_json))
        records = [
            IssuerRecord(str(entry["id"]), _aware(dt.datetime.fromisoformat(entry["active_from"])))
            for entry in raw
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise CaSetupError(f"{layout.issuers_json} is not a valid issuer list: {exc}") from exc
    if not records or not all(record.id.isdigit() for record in records):
        raise CaSetupError(f"{layout.issuers_json} must list issuers with numeric ids")
    return sorted(records, key=lambda record: int(record.id))


def write_issuer_records(layout: CaLayout, records: list[IssuerRecord]) -> None:
    entries = [
        {"id": record.id, "active_from": record.active_from.isoformat()} for record in records
    ]
    write_file(
        layout.issuers_json, (json.dumps(entries, indent=2) + "\n").encode(), PUBLIC_FILE_MODE
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
