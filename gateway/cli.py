"""The ``gatehouse`` command line.

Every command takes ``--data-dir DIR`` (default ``$GATEHOUSE_DATA_DIR``, else
``./gatehouse-data``) and reads the config there unless ``$GATEHOUSE_CONFIG`` names one.
Errors are one line on stderr and exit status 1 (2 for usage errors); no tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gateway.cli_commands import (
    cmd_ca_rollover,
    cmd_ca_show,
    cmd_certs_issue,
    cmd_certs_list,
    cmd_certs_revoke,
    cmd_certs_show,
    cmd_crl,
    cmd_policy_explain,
    cmd_requests_approve,
    cmd_requests_deny,
    cmd_requests_list,
    cmd_user_add,
)
from gateway.cli_support import CliError, _gateway, _out, _pem_chain, _read_csr, _run
from gateway.config import data_dir_from
from gateway.errors import ConfigError, ErrorKind, GatewayError

Handler = Callable[[argparse.Namespace], int]

__all__ = ["CliError", "_gateway", "_out", "_pem_chain", "_read_csr", "_run", "main"]


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
    from gateway.setup import secure_data_dir, trust_anchor
    from gateway.store.migrate import upgrade

    data_dir = data_dir_from(args.data_dir)
    config = load_config(config_path(data_dir))
    logs.configure(config.logging.level, config.logging.json_lines)
    secure_data_dir(data_dir)
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
    p.add_argument("--client-cert", help="PEM certificate the client authenticates with "
                   "(with --protocol est --auth client-cert: est.client_cert_names)")

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
                  "gateway.cli_admin", "gateway.cli_system")


def _principal_kinds() -> list[Any]:
    from gateway.model import PrincipalKind

    return list(PrincipalKind)


def main(argv: Sequence[str] | None = None) -> int:
    # Everything this process creates (the SQLite database and its journal, keys,
    # exports) is owner-only (docs/security.md, rule 8).
    os.umask(0o077)
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
