"""EST commands: ``gatehouse est show`` (where each profile is served, and how)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_est_show(args: argparse.Namespace) -> int:
    """Per EST profile: URL, label, authentication, CSR attributes, serverkeygen key type."""
    from gateway.config import config_path, data_dir_from, load_config

    config = load_config(config_path(data_dir_from(args.data_dir)))
    base = f"{config.public_https_url()}/.well-known/est"
    out = []
    for name, profile in config.profiles.items():
        est = profile.est
        if not est.enabled:
            continue
        label = est.label or name
        out.append(f"profile {name}")
        out.append(f"  url            {base}/{label}/")
        if name == config.default_profile:
            out.append(f"  default url    {base}/")
        out.append(f"  auth           {est.auth} (approval: {profile.approval})")
        wanted = [w for w in (est.csrattrs.key_type,
                              "SAN" if est.csrattrs.required_sans else None,
                              "channel binding" if est.channel_binding else None) if w]
        out.append(f"  csrattrs       {', '.join(wanted) or '(none: 204)'}")
        out.append(f"  serverkeygen   {est.serverkeygen_key_type}")
    sys.stdout.write("\n".join(out) + "\n" if out else "no profile serves EST\n")
    return 0


def register(sub: Any, add: Any) -> None:
    est = sub.add_parser("est", help="EST service").add_subparsers(dest="est_command",
                                                                   required=True)
    add("show", cmd_est_show, "show where and how each profile is served over EST", est)
