"""The ADCS bridge (certsrv web enrollment): backend type ``adcs`` (ca_backends.registry).

``backend`` drives the pages, ``pages`` reads them, ``auth`` authenticates (Basic,
NTLM/Negotiate with channel binding, client certificate), ``config`` validates the entry.
"""

from __future__ import annotations

from pathlib import Path

from ca_backends.adcs.backend import AdcsBackend
from ca_backends.adcs.config import AdcsConfig
from ca_backends.base import BackendContext


def build_adcs(name: str, config: AdcsConfig, context: BackendContext) -> AdcsBackend:
    return AdcsBackend(name, config, Path(context.data_dir))


__all__ = ["AdcsBackend", "AdcsConfig", "build_adcs"]
