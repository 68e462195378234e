"""SCEP commands: ``gatehouse challenge create|hash`` and ``gatehouse scep ra``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from gateway.config import data_dir_from
from gateway.durations import parse_duration


def cmd_challenge_create(args: argparse.Namespace) -> int:
    """Print a new one-time challenge, alone on stdout (for scripts and MDM profiles)."""
    from gateway.auth.challenges import create_challenge
    from gateway.cli import CliError, _gateway

    gateway = _gateway(args)
    try:
        profile = gateway.policy.profile(args.profile)
        if profile is None:
            raise CliError(f"unknown profile {args.profile!r}")
        if not profile.scep.enabled:
            raise CliError(f"profile {args.profile!r} does not serve SCEP")
        try:
            ttl = (parse_duration(args.ttl) if args.ttl
                   else dt.timedelta(seconds=profile.scep.challenge_ttl_seconds))
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if args.uses < 1:
            raise CliError("--uses must be at least 1")
        with gateway.db.session() as session:
            issued = create_challenge(session, profile=args.profile,
                                      now=dt.datetime.now(dt.UTC), ttl=ttl, uses=args.uses,
                                      subject_pattern=args.subject_pattern)
    finally:
        gateway.db.dispose()
    sys.stdout.write(issued.secret + "\n")
    return 0


def cmd_challenge_hash(args: argparse.Namespace) -> int:
    """Hash a static challenge read from stdin, for scep.static_challenge_hash."""
    from gateway.auth.secrets import hash_secret
    from gateway.cli import CliError

    secret = sys.stdin.readline().rstrip("\r\n")
    if len(secret) < 8:
        raise CliError("a static challenge needs at least 8 characters")
    sys.stdout.write(hash_secret(secret) + "\n")
    return 0


def cmd_scep_ra(args: argparse.Namespace) -> int:
    """Print the RA certificate's SHA-256 fingerprint (scepclient -ca-fingerprint) or PEM;
    ``scep ra renew [PROFILE]`` issues a new RA key and certificate through the pipeline."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from gateway.cli import CliError
    from gateway.config import config_path, load_config
    from gateway.ra import ensure_ra, renew_ra

    words = list(args.words)
    renew = bool(words) and words[0] == "renew"
    if renew:
        words.pop(0)
    if len(words) > 1:
        raise CliError("usage: gatehouse scep ra [renew] [PROFILE]")
    data_dir = data_dir_from(args.data_dir)
    config = load_config(config_path(data_dir))
    name = words[0] if words else config.default_profile
    if name not in config.profiles or not config.profiles[name].scep.enabled:
        raise CliError(f"profile {name!r} does not serve SCEP")
    ra = renew_ra(config, data_dir, name) if renew else ensure_ra(config, data_dir, name)
    if renew:
        sys.stderr.write(f"new RA certificate, serial {ra.certificate.serial_number:x}; "
                         "restart the server to use it\n")
    if args.pem:
        sys.stdout.write(ra.certificate.public_bytes(Encoding.PEM).decode())
    else:
        sys.stdout.write(ra.fingerprint_sha256 + "\n")
    return 0


def register(sub: Any, add: Any) -> None:
    challenge = sub.add_parser("challenge", help="SCEP challenge passwords").add_subparsers(
        dest="challenge_command", required=True)
    p = add("create", cmd_challenge_create, "create a one-time SCEP challenge password",
            challenge)
    p.add_argument("profile")
    p.add_argument("--subject-pattern", metavar="RE",
                   help="regex every CN and SAN of the CSR must fully match")
    p.add_argument("--ttl", metavar="DURATION", help="lifetime, e.g. 1h, 7d "
                                                     "(default: the profile's, 1h)")
    p.add_argument("--uses", type=int, default=1, help="enrollments allowed (default 1)")
    add("hash", cmd_challenge_hash, "hash a static challenge read from stdin", challenge)
    scep = sub.add_parser("scep", help="SCEP service").add_subparsers(
        dest="scep_command", required=True)
    p = add("ra", cmd_scep_ra, "print the RA certificate's SHA-256 fingerprint; "
                               "'ra renew [PROFILE]' issues a new RA", scep)
    p.add_argument("words", nargs="*", metavar="[renew] [PROFILE]")
    p.add_argument("--pem", action="store_true", help="print the certificate in PEM instead")
