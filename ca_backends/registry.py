"""Backend types by the name configuration uses (``type: internal | vault | adcs``).

The one module that imports the concrete backends; the composition root (configuration
validation and ``gateway.backends``) reads it.  A backend module registers nothing itself.
Test-only types add themselves with ``register`` before the configuration is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ca_backends.adcs import AdcsConfig, build_adcs
from ca_backends.base import BackendConfig, BackendFactory
from ca_backends.internal import InternalCaConfig, build_internal_ca
from ca_backends.vault import VaultConfig, build_vault


@dataclass(frozen=True, slots=True)
class BackendType:
    config_model: type[BackendConfig]
    factory: BackendFactory


_REGISTRY: dict[str, BackendType] = {
    "internal": BackendType(InternalCaConfig, build_internal_ca),
    "vault": BackendType(VaultConfig, build_vault),
    "adcs": BackendType(AdcsConfig, build_adcs),
}


def register(type_name: str, config_model: type[BackendConfig], factory: BackendFactory) -> None:
    """Make a backend type available to configuration under ``type: <type_name>``."""
    _REGISTRY[type_name] = BackendType(config_model, factory)


def registered() -> dict[str, BackendType]:
    return dict(_REGISTRY)


__all__ = ["BackendType", "register", "registered"]
