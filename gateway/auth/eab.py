"""External Account Binding keys (RFC 8555 §7.3.4), stored in the credentials table.

An EAB key is an HMAC key the CA hands out of band (``gatehouse eab create PROFILE``).
Unlike a password the server must *use* the key to check the client's HMAC, so a hash is
not enough.  Decision: the key is sealed with AES-256-GCM under a key-encryption key
(KEK) and the sealed form kept in the credential's attributes; ``secret_hash`` keeps a
scrypt hash of it, like every other credential.  The KEK comes from
``$GATEHOUSE_EAB_KEK`` (base64 of 32 bytes) or else the file ``DATA/eab.kek``, created on
first use with mode 0600.  Several instances sharing one database need the same KEK.
A key binds exactly one account (``uses_left`` = 1); ``eab_kid`` is recorded on it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.orm import Session

from gateway.auth.secrets import hash_secret
from gateway.errors import ConfigError
from gateway.store import credentials
from gateway.store.tables import CredentialRow

KIND = "eab"
KEK_ENV = "GATEHOUSE_EAB_KEK"
KEK_FILE = "eab.kek"
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class EabKey:
    kid: str
    key: bytes  # the raw HMAC key
    credential_id: str


@dataclass(frozen=True, slots=True)
class EabKeyInfo:
    kid: str
    profile: str
    used: bool
    bound_account: str | None
    created_at: dt.datetime
    disabled: bool


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_kek(data_dir: Path) -> bytes:
    """The key-encryption key: from the environment, or the data directory's file."""
    value = os.environ.get(KEK_ENV)
    if value:
        try:
            kek = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"${KEK_ENV} is not base64") from None
        if len(kek) != 32:
            raise ConfigError(f"${KEK_ENV} must hold 32 bytes")
        return kek
    path = data_dir / KEK_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    kek = base64.b64decode(path.read_text(encoding="ascii").strip())
    if len(kek) != 32:
        raise ConfigError(f"{path} must hold 32 base64-encoded bytes")
    return kek


def _seal(kek: bytes, key: bytes, kid: str) -> str:
    nonce = secrets.token_bytes(12)
    return _b64(nonce + AESGCM(kek).encrypt(nonce, key, kid.encode()))


def _unseal(kek: bytes, sealed: str, kid: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
        return AESGCM(kek).decrypt(raw[:12], raw[12:], kid.encode())
    except (InvalidTag, ValueError, binascii.Error):
        return None


def create(session: Session, *, profile: str, kek: bytes, now: dt.datetime,
           expires_at: dt.datetime | None = None) -> tuple[str, str]:
    """Make a key; returns (kid, base64url key) to hand to the account holder once."""
    kid = "eab-" + secrets.token_urlsafe(12)
    key = secrets.token_bytes(KEY_BYTES)
    credentials.add(session, kind=KIND, profile=profile, name=kid,
                    secret_hash=hash_secret(_b64(key)), now=now, uses_left=1,
                    expires_at=expires_at, attributes={"sealed_key": _seal(kek, key, kid)})
    return kid, _b64(key)


def lookup(session: Session, *, profile: str, kid: str, kek: bytes,
           now: dt.datetime) -> EabKey | None:
    """The usable key for ``kid`` in ``profile``: None if unknown, used, disabled, expired."""
    row = credentials.find(session, kind=KIND, profile=profile, name=kid)
    if row is None or row.disabled or (row.uses_left is not None and row.uses_left <= 0):
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    key = _unseal(kek, str(row.attributes.get("sealed_key", "")), kid)
    return EabKey(kid, key, row.id) if key is not None else None


def bind(session: Session, key: EabKey, account_id: str) -> bool:
    """Use the key up for ``account_id``; False if a concurrent request used it first."""
    if not credentials.consume_use(session, key.credential_id):
        return False
    row = session.get(CredentialRow, key.credential_id)
    if row is not None:
        row.attributes = {**row.attributes, "account": account_id}
    return True


def list_keys(session: Session, profile: str | None = None) -> list[EabKeyInfo]:
    return [EabKeyInfo(row.name, row.profile or "", (row.uses_left or 0) <= 0,
                       row.attributes.get("account"), row.created_at, row.disabled)
            for row in credentials.list_kind(session, kind=KIND, profile=profile)]
