"""``gatehouse`` inventory, approval, revocation, credential and CA commands.

Split from ``gateway.cli`` (which builds the parser): the handlers for the operator's
day-to-day work.  Each takes the parsed arguments and returns an exit status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.cli_support import CliError, _gateway, _out, _pem_chain, _read_csr, _run
from gateway.config import data_dir_from
from gateway.durations import parse_duration


def cmd_certs_issue(args: argparse.Namespace) -> int:
    from gateway.model import EnrollmentRequest, Operation, Principal, PrincipalKind, Protocol

    csr, der = _read_csr(args.csr)
    gateway = _gateway(args)

    async def go() -> Any:
        try:
            request = EnrollmentRequest(
                protocol=Protocol.MANUAL, operation=Operation.ENROLL, profile=args.profile,
                csr=csr, csr_der=der,
                principal=Principal(PrincipalKind.ADMIN, f"cli:{getpass.getuser()}"))
            return await gateway.enrollment.submit(request)
        finally:
            await gateway.close()

    result = _run(go())
    if result.certificate is None:
        _out(f"request {result.request_id} is {result.state}: {result.reason or 'waiting'}")
        return 3
    pem = _pem_chain(result.certificate.der, result.certificate.chain)
    if args.out:
        Path(args.out).write_text(pem, encoding="ascii")
        _out(f"issued serial {result.certificate.serial} → {args.out}")
    else:
        sys.stdout.write(pem)
    return 0


def cmd_certs_list(args: argparse.Namespace) -> int:
    from gateway.store import certificates

    gateway = _gateway(args)
    expiring = None
    if args.expiring_within:
        expiring = dt.datetime.now(dt.UTC) + parse_duration(args.expiring_within)
    where = certificates.CertificateFilter(subject=args.subject, san=args.san,
                                           profile=args.profile, backend=args.backend,
                                           status=args.status, expiring_before=expiring,
                                           limit=args.limit)
    with gateway.db.session() as session:
        rows = certificates.search(session, where)
        _out(f"{'SERIAL':34} {'STATUS':8} {'NOT AFTER':20} {'PROFILE':12} SUBJECT / SANS")
        for row in rows:
            _out(f"{row.serial:34} {row.status:8} {row.not_after:%Y-%m-%d %H:%M:%S} "
                 f"{row.profile:12} {row.subject or '-'} {' '.join(row.sans)}")
    gateway.db.dispose()
    return 0


def cmd_certs_show(args: argparse.Namespace) -> int:
    from gateway.store import certificates

    gateway = _gateway(args)
    with gateway.db.session() as session:
        row = certificates.get(session, args.serial)
        if row is None:
            raise CliError(f"no certificate with serial {args.serial}")
        info = {
            "serial": row.serial, "status": row.status, "subject": row.subject,
            "issuer": row.issuer, "sans": row.sans, "profile": row.profile,
            "protocol": row.protocol, "backend": row.backend,
            "not_before": row.not_before.isoformat(), "not_after": row.not_after.isoformat(),
            "sha256": row.fingerprint_sha256, "request_id": row.request_id,
            "replaces": row.replaces_serial, "replaced_by": row.replaced_by_serial,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            "revocation_reason": row.revocation_reason,
        }
        _out(json.dumps(info, indent=2))
        sys.stdout.write(_pem_chain(row.der, certificates.chain_of(row)))
    gateway.db.dispose()
    return 0


def cmd_certs_revoke(args: argparse.Namespace) -> int:
    from gateway.model import RevocationReason

    try:
        reason = RevocationReason(args.reason)
    except ValueError:
        raise CliError(f"unknown reason {args.reason!r} (one of: "
                       f"{', '.join(r.value for r in RevocationReason)})") from None
    gateway = _gateway(args)

    async def go() -> str:
        try:
            state: str = await gateway.revocation.revoke(args.serial, reason,
                                                          by=f"cli:{getpass.getuser()}")
            return state
        finally:
            await gateway.close()

    state = _run(go())
    _out(f"revoked {args.serial} ({reason.value})" if state == "done"
         else f"revocation of {args.serial} recorded; the backend cannot revoke: needs an operator")
    return 0


def cmd_requests_list(args: argparse.Namespace) -> int:
    from gateway.model import RequestState
    from gateway.store.requests import RequestFilter

    gateway = _gateway(args)
    state = RequestState(args.state) if args.state else None
    views = gateway.enrollment.list_requests(RequestFilter(state=state, profile=args.profile,
                                                           limit=args.limit))
    _out(f"{'ID':36} {'STATE':9} {'PROTO':6} {'PROFILE':12} {'CREATED':19} SUBJECT / REASON")
    for item in views:
        _out(f"{item.id:36} {item.state.value:9} {item.protocol:6} {item.profile:12} "
             f"{item.created_at:%Y-%m-%d %H:%M:%S} {item.subject or '-'} {item.reason}")
    gateway.db.dispose()
    return 0


def cmd_requests_approve(args: argparse.Namespace) -> int:
    gateway = _gateway(args)

    async def go() -> Any:
        try:
            return await gateway.enrollment.approve(args.id, by=f"cli:{getpass.getuser()}")
        finally:
            await gateway.close()

    result = _run(go())
    suffix = f", serial {result.certificate.serial}" if result.certificate else ""
    _out(f"request {args.id} approved: {result.state.value}{suffix}")
    return 0


def cmd_requests_deny(args: argparse.Namespace) -> int:
    gateway = _gateway(args)
    gateway.enrollment.deny(args.id, by=f"cli:{getpass.getuser()}", reason=args.reason or "")
    gateway.db.dispose()
    _out(f"request {args.id} denied")
    return 0


def cmd_crl(args: argparse.Namespace) -> int:
    from cryptography.x509 import load_der_x509_crl

    gateway = _gateway(args)

    async def go() -> bytes:
        try:
            data: bytes = await gateway.revocation.crl(args.backend, args.issuer)
            return data
        finally:
            await gateway.close()

    der = _run(go())
    pem = load_der_x509_crl(der).public_bytes(Encoding.PEM)
    if args.out:
        Path(args.out).write_bytes(pem)
        _out(f"CRL written to {args.out}")
    else:
        sys.stdout.write(pem.decode())
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from gateway.auth.secrets import hash_secret
    from gateway.store import credentials

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise CliError("the password must have at least 8 characters")
    gateway = _gateway(args)
    if gateway.policy.profile(args.profile) is None:
        raise CliError(f"unknown profile {args.profile!r}")
    with gateway.db.session() as session:
        existing = credentials.find(session, kind="password", profile=args.profile,
                                    name=args.name)
        if existing is not None:
            existing.secret_hash = hash_secret(password)
            existing.disabled = False
            action = "updated"
        else:
            credentials.add(session, kind="password", profile=args.profile, name=args.name,
                            secret_hash=hash_secret(password), now=dt.datetime.now(dt.UTC))
            action = "added"
    gateway.db.dispose()
    _out(f"user {args.name} {action} for profile {args.profile}")
    return 0


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from gateway.model import EnrollmentRequest, Operation, Principal, PrincipalKind, Protocol
    from gateway.policy import Facts

    csr, der = _read_csr(args.csr)
    attributes = {}
    if args.client_cert:
        from gateway.policy import certificate_names

        try:
            cert = x509.load_pem_x509_certificate(Path(args.client_cert).read_bytes())
        except (OSError, ValueError) as exc:
            raise CliError(f"{args.client_cert}: not a PEM certificate ({exc})") from None
        attributes["cert_names"] = json.dumps(certificate_names(cert))
    gateway = _gateway(args)
    request = EnrollmentRequest(
        protocol=Protocol(args.protocol), operation=Operation.ENROLL, profile=args.profile,
        csr=csr, csr_der=der,
        principal=Principal(PrincipalKind(args.auth), "explain", attributes))
    explanation = gateway.policy.decide(request, Facts(now=dt.datetime.now(dt.UTC)))
    gateway.db.dispose()
    decision = explanation.decision
    _out(f"decision: {decision.outcome.value} — {decision.reason}")
    for check in explanation.checks:
        _out(f"  • {check}")
    if decision.outcome.value != "denied":
        _out(f"backend: {decision.backend}" + (f" (fallback {decision.fallback_backend})"
                                               if decision.fallback_backend else ""))
        _out(f"subject: {decision.subject.rfc4514_string() or '(empty)'}")
        _out(f"sans: {', '.join(map(str, decision.sans)) or '(none)'}")
        _out(f"key usage: {', '.join(sorted(decision.key_usage))}")
        _out(f"extended key usage: {', '.join(decision.extended_key_usage)}")
    return 0 if decision.outcome.value != "denied" else 4


def cmd_ca_show(args: argparse.Namespace) -> int:
    from gateway.setup import fingerprint

    gateway = _gateway(args)
    from ca_backends.base import Rollover

    async def go() -> None:
        try:
            for name, backend in gateway.backends.items():
                if args.backend and name != args.backend:
                    continue
                chain = await backend.ca_chain()
                _out(f"backend {name}:")
                for cert in chain:
                    _out(f"  {cert.subject.rfc4514_string()}")
                    _out(f"    not after {cert.not_valid_after_utc:%Y-%m-%d}  "
                         f"SHA-256 {fingerprint(cert)}")
                if isinstance(backend, Rollover):
                    upcoming = backend.next_ca_chain()
                    if upcoming:
                        _out(f"  next issuing CA: {upcoming[0].subject.rfc4514_string()}")
        finally:
            await gateway.close()

    _run(go())
    return 0


def cmd_ca_rollover(args: argparse.Namespace) -> int:
    from ca_backends.internal import InternalCaConfig, read_passphrase, rollover
    from gateway.clock import SystemClock
    from gateway.config import config_path, load_config, resolve_path

    data_dir = data_dir_from(args.data_dir)
    config = load_config(config_path(data_dir))
    entry = config.backends.get(args.backend)
    if not isinstance(entry, InternalCaConfig):
        raise CliError(f"backend {args.backend!r} is not an internal CA")
    now = dt.datetime.now(dt.UTC)
    if args.at:
        try:
            activate_at = dt.datetime.fromisoformat(args.at)
        except ValueError:
            raise CliError(f"--at {args.at!r} is not an ISO 8601 time") from None
        if activate_at.tzinfo is None:
            activate_at = activate_at.replace(tzinfo=dt.UTC)
    else:
        activate_at = now + parse_duration(args.activate_in)
    info = rollover(resolve_path(data_dir, entry.directory), read_passphrase(entry, data_dir),
                    activate_at, SystemClock(), validity_days=entry.issuer_validity_days)
    _out(f"issuing CA generation {info.id} prepared: {info.certificate.subject.rfc4514_string()}")
    _out(f"  becomes active at {info.active_from.isoformat()} (restart or reload workers "
         "before then so every instance has it)")
    return 0
