"""The HashiCorp Vault / OpenBao PKI backend (type ``vault``).

``backend`` signs, revokes and reads the mount's chain and CRL; ``auth`` logs in (token,
AppRole, TLS certificate) and keeps the token fresh.  Import the public API from here.
"""

from __future__ import annotations

from ca_backends.vault.backend import VaultBackend, VaultConfig, build_vault, colon_hex

__all__ = ["VaultBackend", "VaultConfig", "build_vault", "colon_hex"]
