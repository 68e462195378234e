"""``gatehouse tls renew``: a new TLS server key and certificate through the pipeline."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.config import data_dir_from


def cmd_tls_renew(args: argparse.Namespace) -> int:
    """Issue a fresh key and certificate for the listener's names (gateway.system_certs);
    the old one stays valid until it expires or is revoked; restart the server to use it."""
    from gateway.config import config_path, load_config
    from gateway.system_certs import renew_tls

    data_dir = data_dir_from(args.data_dir)
    config = load_config(config_path(data_dir))
    issued = renew_tls(config, data_dir)
    sys.stdout.write(f"new TLS server certificate, serial {issued.serial} "
                     f"(until {issued.not_after:%Y-%m-%d}); restart the server to use it\n")
    return 0


def register(sub: Any, add: Any) -> None:
    tls = sub.add_parser("tls", help="the HTTPS listener's certificate").add_subparsers(
        dest="tls_command", required=True)
    add("renew", cmd_tls_renew, "issue a new TLS server key and certificate", tls)
