"""ACME commands: ``gatehouse eab create PROFILE`` and ``gatehouse eab list``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from gateway.durations import parse_duration


def cmd_eab_create(args: argparse.Namespace) -> int:
    """Print a new EAB key id and HMAC key (RFC 8555 §7.3.4); the key is shown only once."""
    from gateway.auth import eab
    from gateway.cli import CliError, _gateway

    gateway = _gateway(args)
    try:
        profile = gateway.policy.profile(args.profile)
        if profile is None:
            raise CliError(f"unknown profile {args.profile!r}")
        if not profile.acme.enabled:
            raise CliError(f"profile {args.profile!r} does not serve ACME")
        now = dt.datetime.now(dt.UTC)
        try:
            expires = now + parse_duration(args.ttl) if args.ttl else None
        except ValueError as exc:
            raise CliError(str(exc)) from None
        with gateway.db.session() as session:
            kid, key = eab.create(session, profile=args.profile,
                                  kek=eab.load_kek(gateway.data_dir), now=now, expires_at=expires)
    finally:
        gateway.db.dispose()
    sys.stdout.write(f"kid: {kid}\nhmac_key: {key}\n")
    return 0


def cmd_eab_list(args: argparse.Namespace) -> int:
    from gateway.auth import eab
    from gateway.cli import _gateway

    gateway = _gateway(args)
    try:
        with gateway.db.session() as session:
            keys = eab.list_keys(session, args.profile)
    finally:
        gateway.db.dispose()
    sys.stdout.write(f"{'KID':24} {'PROFILE':12} {'STATE':8} {'CREATED':20} ACCOUNT\n")
    for key in keys:
        state = "disabled" if key.disabled else ("used" if key.used else "unused")
        sys.stdout.write(f"{key.kid:24} {key.profile:12} {state:8} "
                         f"{key.created_at:%Y-%m-%d %H:%M:%S} {key.bound_account or '-'}\n")
    return 0


def register(sub: Any, add: Any) -> None:
    group = sub.add_parser("eab", help="ACME external account binding keys").add_subparsers(
        dest="eab_command", required=True)
    p = add("create", cmd_eab_create, "create an EAB key id + HMAC key for a profile", group)
    p.add_argument("profile")
    p.add_argument("--ttl", metavar="DURATION", help="unused keys expire after this (e.g. 7d)")
    p = add("list", cmd_eab_list, "list EAB keys", group)
    p.add_argument("--profile")
