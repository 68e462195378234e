"""Admin API tokens: bearer tokens (RFC 6750 §2.1) stored hashed in the credentials table.

A token reads ``gh_<credential id>.<secret>``.  The id part finds the row directly, so a
check costs one cheap scrypt (``TOKEN_COST``: the secret has 256 random bits, brute force
is not the threat) and no scan.  Only the scrypt hash of the secret is stored; the token
is shown once, by ``gatehouse token create``.  The role lives in the row's attributes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session

from gateway.auth.secrets import TOKEN_COST, hash_secret, new_token, verify_secret
from gateway.errors import ErrorKind, GatewayError
from gateway.store import credentials
from gateway.store.tables import CredentialRow

KIND = "api-token"
PREFIX = "gh_"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_ID = re.compile(r"^[0-9a-f-]{36}$")


class Role(StrEnum):
    """What a token may do: auditors read, operators also approve and hand out
    challenges, admins do everything."""

    AUDITOR = "auditor"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.AUDITOR: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """The authenticated holder of a token."""

    id: str
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    name: str
    role: Role
    created_at: dt.datetime
    expires_at: dt.datetime | None
    disabled: bool


def create_token(session: Session, *, role: Role, name: str, now: dt.datetime,
                 expires_at: dt.datetime | None = None) -> tuple[TokenIdentity, str]:
    """Store a new token; returns its identity and the token text (shown once)."""
    if not _NAME.fullmatch(name):
        raise GatewayError(ErrorKind.MALFORMED,
                           "a token name has 1-64 letters, digits, '_', '.', '@' or '-'")
    if credentials.find(session, kind=KIND, profile=None, name=name) is not None:
        raise GatewayError(ErrorKind.CONFLICT, f"a token named {name!r} exists")
    secret = new_token()
    row = credentials.add(session, kind=KIND, profile=None, name=name,
                          secret_hash=hash_secret(secret, cost=TOKEN_COST), now=now,
                          attributes={"role": role.value}, expires_at=expires_at)
    return TokenIdentity(row.id, name, role), f"{PREFIX}{row.id}.{secret}"


def authenticate(session: Session, token: str, *, now: dt.datetime) -> TokenIdentity | None:
    """The token's holder, or None for a malformed, unknown, disabled or expired token."""
    if not token.startswith(PREFIX):
        return None
    token_id, _, secret = token.removeprefix(PREFIX).partition(".")
    if not _ID.fullmatch(token_id) or not secret or len(secret) > 128:
        return None
    row = session.get(CredentialRow, token_id)
    if row is None or row.kind != KIND or row.disabled:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if not verify_secret(secret, row.secret_hash):
        return None
    try:
        role = Role(str((row.attributes or {}).get("role", "")))
    except ValueError:
        return None
    return TokenIdentity(row.id, row.name, role)


def identity_of(session: Session, token_id: str, *, now: dt.datetime) -> TokenIdentity | None:
    """The holder of token ``token_id`` while it is enabled and unexpired (for a console
    session that proved the token at sign-in), else None."""
    row = session.get(CredentialRow, token_id)
    if row is None or row.kind != KIND or row.disabled:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    try:
        role = Role(str((row.attributes or {}).get("role", "")))
    except ValueError:
        return None
    return TokenIdentity(row.id, row.name, role)


def list_tokens(session: Session) -> list[TokenInfo]:
    out = []
    for row in credentials.list_kind(session, kind=KIND):
        try:
            role = Role(str((row.attributes or {}).get("role", "")))
        except ValueError:
            continue
        out.append(TokenInfo(row.id, row.name, role, row.created_at, row.expires_at,
                             row.disabled))
    return out


def disable_token(session: Session, name: str) -> bool:
    row = credentials.find(session, kind=KIND, profile=None, name=name)
    if row is None:
        return False
    row.disabled = True
    return True
