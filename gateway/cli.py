"""The ``gatehouse`` command line.

Every command takes ``--data-dir DIR`` (default ``$GATEHOUSE_DATA_DIR``, else
``./gatehouse-data``) and reads the config there unless ``$GATEHOUSE_CONFIG`` names one.
Errors are one line on stderr and exit status 1 (2 for usage errors); no tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.config import data_dir_from, parse_duration
from gateway.errors import ConfigError, ErrorKind, GatewayError

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A one-line message for the user."""


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# -- helpers -----------------------------------------------------------------------------


def _gateway(args: argparse.Namespace) -> Any:
    from gateway.runtime import Gateway

    return Gateway.from_data_dir(data_dir_from(args.data_dir))


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _read_csr(path: str) -> tuple[x509.CertificateSigningRequest, bytes]:
    from gateway.pem import load_csr

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    return load_csr(data)


def _pem_chain(der: bytes, chain: Sequence[bytes]) -> str:
    out = []
    for item in (der, *chain):
        out.append(x509.load_der_x509_certificate(item).public_bytes(Encoding.PEM).decode())
    return "".join(out)


# -- commands ----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from gateway.setup import initialize, trust_anchor

    data_dir = data_dir_from(args.data_dir)
    config = initialize(data_dir, https=args.https, http=args.http, key_type=args.key_type,
                        command="init")
    anchor = trust_anchor(config, data_dir)
    _out(f"initialised {data_dir}")
    if anchor:
        _out(f"trust anchor: {anchor[0]}")
        _out(f"  SHA-256 fingerprint: {anchor[1]}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.config import config_path, database_url, load_config
    from gateway.store.migrate import upgrade

    data_dir = data_dir_from(args.data_dir)
    config = load_config(config_path(data_dir))
    upgrade(database_url(config, data_dir))
    _out("database schema is up to date")
    return 0


def _listeners(args: argparse.Namespace, config: Any) -> Any:
    from gateway.serve import Listeners

    https = args.https or config.server.https
    http = config.server.http if args.http is None else (args.http or None)
    return Listeners(https=https, http=http)


def _serve(args: argparse.Namespace, *, banner: bool) -> int:
    from gateway import logs
    from gateway.config import config_path, database_url, load_config
    from gateway.serve import serve
    from gateway.setup import trust_anchor
    from gateway.store.migrate import upgrade

    data_dir = data_dir_from(args.data_dir)
    config = load_config(config_path(data_dir))
    logs.configure(config.logging.level, config.logging.json_lines)
    upgrade(database_url(config, data_dir))
    listeners = _listeners(args, config)
    workers = args.workers or config.server.workers
    if banner:
        _out("Gatehouse is serving")
        _out(f"  HTTPS  https://{listeners.https}")
        if listeners.http:
            _out(f"  HTTP   http://{listeners.http}")
        _out(f"  data   {data_dir}")
        anchor = trust_anchor(config, data_dir)
        if anchor:
            _out(f"  trust anchor  {anchor[0]}")
            _out(f"  SHA-256       {anchor[1]}")
        _out(f"  workers {workers}")
        sys.stdout.flush()
    return serve(data_dir, listeners, workers)


def cmd_up(args: argparse.Namespace) -> int:
    from gateway.setup import initialize

    data_dir = data_dir_from(args.data_dir)
    initialize(data_dir, https=args.https or "127.0.0.1:8443",
               http="127.0.0.1:8080" if args.http is None else (args.http or None),
               command="up")
    return _serve(args, banner=True)


def cmd_serve(args: argparse.Namespace) -> int:
    return _serve(args, banner=True)


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
    gateway = _gateway(args)
    request = EnrollmentRequest(
        protocol=Protocol(args.protocol), operation=Operation.ENROLL, profile=args.profile,
        csr=csr, csr_der=der,
        principal=Principal(PrincipalKind(args.auth), "explain"))
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


# -- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatehouse",
                                     description="Multi-protocol certificate enrollment gateway")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (default $GATEHOUSE_DATA_DIR "
                                           "or ./gatehouse-data)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Handler, help_text: str, parent: Any = sub) -> Any:
        p = parent.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    def listen_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--https", metavar="HOST:PORT", help="HTTPS listener (default 127.0.0.1:8443)")
        p.add_argument("--http", metavar="HOST:PORT",
                       help="plain HTTP listener (default 127.0.0.1:8080; '' disables it)")
        p.add_argument("--workers", type=int, help="worker processes (default from config: 1)")

    p = add("up", cmd_up, "initialise on first run, then serve")
    listen_options(p)
    p = add("init", cmd_init, "write config, CA, TLS certificate and database")
    p.add_argument("--https", default="127.0.0.1:8443", metavar="HOST:PORT")
    p.add_argument("--http", default="127.0.0.1:8080", metavar="HOST:PORT")
    p.add_argument("--key-type", default="ec-p256",
                   choices=["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"])
    p = add("serve", cmd_serve, "serve with an existing data directory")
    listen_options(p)
    add("migrate", cmd_migrate, "apply database migrations")

    certs = sub.add_parser("certs", help="the certificate inventory").add_subparsers(
        dest="certs_command", required=True)
    p = add("issue", cmd_certs_issue, "issue for a CSR through the pipeline", certs)
    p.add_argument("--profile", default="default")
    p.add_argument("--csr", required=True, help="PEM or DER PKCS#10 file")
    p.add_argument("--out", help="write the PEM chain here (default stdout)")
    p = add("list", cmd_certs_list, "search certificates", certs)
    p.add_argument("--subject")
    p.add_argument("--san")
    p.add_argument("--profile")
    p.add_argument("--backend")
    p.add_argument("--status", choices=["valid", "revoked"])
    p.add_argument("--expiring-within", metavar="DURATION", help="e.g. 30d")
    p.add_argument("--limit", type=int, default=100)
    p = add("show", cmd_certs_show, "show one certificate", certs)
    p.add_argument("serial")
    p = add("revoke", cmd_certs_revoke, "revoke a certificate", certs)
    p.add_argument("serial")
    p.add_argument("--reason", default="unspecified", help="RFC 5280 reason, e.g. keyCompromise")

    reqs = sub.add_parser("requests", help="enrollment requests").add_subparsers(
        dest="requests_command", required=True)
    p = add("list", cmd_requests_list, "list requests", reqs)
    p.add_argument("--state", choices=["received", "held", "submitted", "pending", "issued",
                                       "denied", "failed"])
    p.add_argument("--profile")
    p.add_argument("--limit", type=int, default=100)
    p = add("approve", cmd_requests_approve, "approve a held request", reqs)
    p.add_argument("id")
    p = add("deny", cmd_requests_deny, "deny a request", reqs)
    p.add_argument("id")
    p.add_argument("--reason", default="")

    p = add("crl", cmd_crl, "print the current CRL (PEM)")
    p.add_argument("--backend", default="internal")
    p.add_argument("--issuer", help="issuing CA generation (default: the active one)")
    p.add_argument("--out")

    users = sub.add_parser("user", help="EST users").add_subparsers(dest="user_command",
                                                                     required=True)
    p = add("add", cmd_user_add, "add a password user (password read from stdin)", users)
    p.add_argument("profile")
    p.add_argument("name")

    policy = sub.add_parser("policy", help="the policy engine").add_subparsers(
        dest="policy_command", required=True)
    p = add("explain", cmd_policy_explain, "print the decision for a CSR and why", policy)
    p.add_argument("--profile", default="default")
    p.add_argument("--csr", required=True)
    p.add_argument("--auth", default="admin", choices=[k.value for k in _principal_kinds()])
    p.add_argument("--protocol", default="manual", choices=["est", "scep", "acme", "manual"])

    ca = sub.add_parser("ca", help="certificate authorities").add_subparsers(
        dest="ca_command", required=True)
    p = add("show", cmd_ca_show, "show CA chains and fingerprints", ca)
    p.add_argument("--backend")
    p = add("rollover", cmd_ca_rollover, "prepare a successor issuing CA", ca)
    p.add_argument("--backend", default="internal")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--at", help="activation time, ISO 8601")
    group.add_argument("--activate-in", default="7d", help="activation delay (default 7d)")
    for module_name in CLI_EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.register(sub, add)
    return parser


# Modules that add commands: each has ``register(subparsers, add)`` where
# ``add(name, handler, help, parent=subparsers)`` returns a parser with --data-dir.
CLI_EXTENSIONS = ("gateway.cli_est", "gateway.cli_scep", "gateway.cli_acme",
                  "gateway.cli_admin")


def _principal_kinds() -> list[Any]:
    from gateway.model import PrincipalKind

    return list(PrincipalKind)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except (CliError, ConfigError) as exc:
        sys.stderr.write(f"gatehouse: {exc}\n")
        return 1
    except GatewayError as exc:
        sys.stderr.write(f"gatehouse: {exc.detail}\n")
        return 4 if exc.kind is ErrorKind.POLICY_DENIED else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
