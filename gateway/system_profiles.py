"""Built-in profiles for the certificates Gatehouse issues to itself (issue #11).

The TLS server certificate and each SCEP profile's RA certificate go through the one
pipeline like any other certificate (inventory, audit, revocation), under profiles that
are built in rather than written in gatehouse.yaml:

- ``_system-tls``: the HTTPS listener's certificate: EC P-256 (or RSA) key, the listener's
  DNS names and IP addresses, keyUsage digitalSignature, extendedKeyUsage serverAuth,
  397 days (the CA/Browser Forum ceiling).
- ``_system-ra`` (the first internal CA) and ``_system-ra-<backend>`` (any other internal
  CA, for a SCEP profile routed to it): RSA key (SCEP clients encrypt to it), a subject
  without host names and no SAN, keyUsage digitalSignature + keyEncipherment and no
  extendedKeyUsage (scepclient and certmonger accept no EKU; an RA is not a TLS peer),
  730 days.

No door serves them: they are not in ``config.profiles`` (which EST labels, SCEP paths and
ACME directories are built from), their EST/SCEP/ACME settings are disabled, and the
policy decides them only for the system principal (``SYSTEM_PRINCIPAL`` over
``Protocol.MANUAL``); anyone else naming them is told the profile is unknown.  The
``_system`` prefix is reserved: gatehouse.yaml cannot define a profile with it.
"""

from __future__ import annotations

import datetime as dt

from gateway.config import GatehouseConfig, ProfileConfig
from gateway.model import EnrollmentRequest, Principal, PrincipalKind, Protocol

RESERVED_PREFIX = "_system"
SYSTEM_TLS = "_system-tls"
SYSTEM_RA = "_system-ra"
SYSTEM_PRINCIPAL = Principal(PrincipalKind.ADMIN, "gatehouse:system")

TLS_VALIDITY = dt.timedelta(days=397)
RA_VALIDITY = dt.timedelta(days=730)

_CLOSED_DOORS = {"est": {"enabled": False}, "scep": {"enabled": False},
                 "acme": {"enabled": False}}


def is_system_profile(name: str) -> bool:
    return name.startswith(RESERVED_PREFIX)


def is_system_request(request: EnrollmentRequest) -> bool:
    """Only Gatehouse itself, through the CLI/start-up code, enrolls on system profiles."""
    return (request.protocol is Protocol.MANUAL
            and request.principal.kind is SYSTEM_PRINCIPAL.kind
            and request.principal.id == SYSTEM_PRINCIPAL.id)


def internal_backends(config: GatehouseConfig) -> list[str]:
    """Names of the internal-CA backends, in configuration order."""
    return [name for name, entry in config.backends.items()
            if getattr(entry, "type", None) == "internal"]


def ra_profile_name(config: GatehouseConfig, backend: str) -> str:
    """The system profile issuing RA certificates from ``backend`` (an internal CA)."""
    first = internal_backends(config)[:1]
    return SYSTEM_RA if [backend] == first else f"{SYSTEM_RA}-{backend}"


def ra_issuer(config: GatehouseConfig, profile_name: str) -> str | None:
    """The internal CA that issues a SCEP profile's RA: its own backend when that is an
    internal CA, else the first internal CA; None when there is none."""
    internal = internal_backends(config)
    backend = config.profiles[profile_name].backend
    if backend in internal:
        return backend
    return internal[0] if internal else None


def system_profiles(config: GatehouseConfig) -> dict[str, ProfileConfig]:
    """The built-in profiles for this configuration's internal CAs (none without one)."""
    internal = internal_backends(config)
    if not internal:
        return {}
    out = {SYSTEM_TLS: _tls_profile(internal[0])}
    for backend in internal:
        out[ra_profile_name(config, backend)] = _ra_profile(backend)
    return out


def _tls_profile(backend: str) -> ProfileConfig:
    return ProfileConfig.model_validate({
        "backend": backend,
        "auth_methods": [PrincipalKind.ADMIN],
        "keys": {"rsa_min_bits": 2048, "ec_curves": ["P-256", "P-384"], "ed25519": False},
        "subject": {"allowed_attributes": ["CN"]},
        "sans": {"email": {"allow": []}, "uri": {"allow": []}},
        "validity": {"default": TLS_VALIDITY, "max": TLS_VALIDITY},
        "key_usage": ["digital_signature"],
        "extended_key_usage": ["serverAuth"],
        **_CLOSED_DOORS,
    })


def _ra_profile(backend: str) -> ProfileConfig:
    return ProfileConfig.model_validate({
        "backend": backend,
        "auth_methods": [PrincipalKind.ADMIN],
        "keys": {"rsa_min_bits": 2048, "ec_curves": [], "ed25519": False},
        "subject": {"allowed_attributes": ["CN", "O"]},
        "sans": {"dns": {"allow": []}, "ip": {"allow": []}, "email": {"allow": []},
                 "uri": {"allow": []}, "max_count": 0},
        "validity": {"default": RA_VALIDITY, "max": RA_VALIDITY},
        "key_usage": ["digital_signature", "key_encipherment"],
        "extended_key_usage": [],
        **_CLOSED_DOORS,
    })
