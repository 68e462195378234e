"""The internal CA backend (type ``internal``): Gatehouse's own root and issuing CA.

``backend`` is the CaBackend (with the RevocationSigner and Rollover abilities); its
building blocks: ``keys``, ``files``, ``config``, ``certs`` (certificate profiles),
``lifecycle`` (init, load, rollover), ``revocation`` (CRL and OCSP signing), ``tls``
(the gateway's TLS server certificate).  Import the public API from this package.
"""

from __future__ import annotations

from ca_backends.internal.backend import (
    CaSetupError,
    InternalCa,
    InternalCaConfig,
    KeyType,
    build_internal_ca,
    ensure_passphrase,
    init_from_config,
    init_internal_ca,
    issue_tls_server_cert,
    read_passphrase,
    rollover,
)

__all__ = [
    "CaSetupError",
    "InternalCa",
    "InternalCaConfig",
    "KeyType",
    "build_internal_ca",
    "ensure_passphrase",
    "init_from_config",
    "init_internal_ca",
    "issue_tls_server_cert",
    "read_passphrase",
    "rollover",
]
