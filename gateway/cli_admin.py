"""Admin token commands: ``gatehouse token create|list|disable``."""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import sys
from typing import Any

from gateway.durations import parse_duration


def cmd_token_create(args: argparse.Namespace) -> int:
    """Print a new admin API token, alone on stdout; only its hash is kept."""
    from gateway.auth.tokens import Role, create_token
    from gateway.cli import CliError, _gateway

    role = Role(args.role)
    name = args.name or f"{role.value}-{secrets.token_hex(3)}"
    now = dt.datetime.now(dt.UTC)
    try:
        expires_at = now + parse_duration(args.expires_in) if args.expires_in else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    gateway = _gateway(args)
    try:
        with gateway.db.session() as session:
            _identity, token = create_token(session, role=role, name=name, now=now,
                                            expires_at=expires_at)
    finally:
        gateway.db.dispose()
    sys.stdout.write(token + "\n")
    sys.stderr.write(f"token {name!r} ({role.value}) created; it is shown only once\n")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from gateway.auth.tokens import list_tokens
    from gateway.cli import _gateway

    gateway = _gateway(args)
    try:
        with gateway.db.session() as session:
            tokens = list_tokens(session)
    finally:
        gateway.db.dispose()
    sys.stdout.write(f"{'NAME':24} {'ROLE':9} {'CREATED':19} {'EXPIRES':19} STATE\n")
    for info in tokens:
        expires = f"{info.expires_at:%Y-%m-%d %H:%M:%S}" if info.expires_at else "-"
        sys.stdout.write(f"{info.name:24} {info.role.value:9} {info.created_at:%Y-%m-%d %H:%M:%S} "
                         f"{expires:19} {'disabled' if info.disabled else 'active'}\n")
    return 0


def cmd_token_disable(args: argparse.Namespace) -> int:
    from gateway.auth.tokens import disable_token
    from gateway.cli import CliError, _gateway

    gateway = _gateway(args)
    try:
        with gateway.db.session() as session:
            found = disable_token(session, args.name)
    finally:
        gateway.db.dispose()
    if not found:
        raise CliError(f"no token named {args.name!r}")
    sys.stdout.write(f"token {args.name} disabled\n")
    return 0


def register(sub: Any, add: Any) -> None:
    group = sub.add_parser("token", help="admin API / console tokens").add_subparsers(
        dest="token_command", required=True)
    p = add("create", cmd_token_create, "create an admin API token (printed once)", group)
    p.add_argument("--role", required=True, choices=["admin", "operator", "auditor"])
    p.add_argument("--name", help="a name for audit logs (default: ROLE-random)")
    p.add_argument("--expires-in", metavar="DURATION", help="e.g. 90d (default: never)")
    add("list", cmd_token_list, "list admin API tokens", group)
    p = add("disable", cmd_token_disable, "disable an admin API token", group)
    p.add_argument("name")
