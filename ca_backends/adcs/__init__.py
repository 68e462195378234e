"""The ADCS bridge (certsrv web enrollment): registers backend type ``adcs``.

``backend`` drives the pages, ``pages`` reads them, ``auth`` authenticates (Basic,
NTLM/Negotiate with channel binding, client certificate), ``config`` validates the entry.
"""

from __future__ import annotations

from pathlib import Path

from ca_backends.adcs.backend import AdcsBackend
from ca_backends.adcs.config import AdcsConfig
from ca_backends.base import BackendContext, register


def build_adcs(name: str, config: AdcsConfig, context: BackendContext) -> AdcsBackend:
    return AdcsBackend(name, config, Path(context.data_dir))


register("adcs", AdcsConfig, build_adcs)

__all__ = ["AdcsBackend", "AdcsConfig", "build_adcs"]
