"""SCEP registration authority (RA) identities: one RSA key and certificate per profile.

SCEP (RFC 8894 §2.1, §3) needs a key that clients encrypt their requests to and that
signs the server's replies.  Gatehouse never hands a CA key to a protocol: each SCEP
profile has its own RA, so SCEP works in front of any backend (internal CA, Vault, ADCS).

Where it lives: ``<data>/scep/<profile>/ra.key`` and ``ra.pem``, created at ``gatehouse
init``/``up`` (and lazily at start when missing) with an RSA-2048 key (RSA because SCEP
clients encrypt to it with RSA key transport) and a certificate issued through the
pipeline on the built-in ``_system-ra`` profile (gateway.system_profiles: the profile's
internal CA, else the first; keyUsage digitalSignature + keyEncipherment, no EKU), so it
is in the inventory, audited and revocable; ``gatehouse scep ra renew PROFILE`` replaces
it.  An RA made by a version before issue #11 is kept (not imported into the inventory)
until it is renewed.  Or imported: ``scep.ra_cert`` and ``scep.ra_key`` name PEM files.

Decision: the RA key is stored as *unencrypted* PKCS #8 with mode 0600, like the TLS
server key: every worker loads it unattended at every start, it can sign no certificate,
and the CA passphrase need not be present where only an imported RA is used.  A
generated RA certificate is re-issued at start when it has less than 30 days left.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.clock import Clock, SystemClock
from gateway.config import GatehouseConfig, ProfileConfig, resolve_path
from gateway.errors import ConfigError, GatewayError
from gateway.model import IssuedCertificate
from gateway.runtime import Gateway
from gateway.system_certs import (
    issue_system_certificate,
    key_pem,
    run_with_gateway,
    serial_of,
    write_private,
)
from gateway.system_profiles import ra_issuer, ra_profile_name

RA_RENEW_BEFORE = dt.timedelta(days=30)
_PEM = serialization.Encoding.PEM
_DER = serialization.Encoding.DER
log = logging.getLogger("gatehouse.scep")


class NoRaIssuer(ConfigError):
    """No internal CA can issue this profile's RA and none is imported."""


@dataclass(frozen=True, slots=True)
class RaIdentity:
    """The RA key and certificate of one SCEP profile, plus anything that followed it."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    der: bytes
    extra_der: tuple[bytes, ...] = ()  # certificates after the first in ra.pem

    @property
    def fingerprint_sha256(self) -> str:
        return self.certificate.fingerprint(hashes.SHA256()).hex()


def ra_paths(data_dir: Path, profile_name: str, profile: ProfileConfig) -> tuple[Path, Path]:
    """(key, certificate) paths of a profile's RA."""
    settings = profile.scep
    if settings.ra_cert and settings.ra_key:
        return resolve_path(data_dir, settings.ra_key), resolve_path(data_dir, settings.ra_cert)
    directory = data_dir / "scep" / profile_name
    return directory / "ra.key", directory / "ra.pem"


def load_ra(key_path: Path, cert_path: Path) -> RaIdentity:
    """Read an RA; ConfigError naming the file when it is missing or unusable."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{key_path}: cannot read the SCEP RA key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{key_path}: the SCEP RA key must be RSA (clients encrypt to it)")
    try:
        certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{cert_path}: cannot read the SCEP RA certificate ({exc})") from None
    cert_key = certs[0].public_key()
    if not isinstance(cert_key, rsa.RSAPublicKey) or \
            cert_key.public_numbers() != key.public_key().public_numbers():
        raise ConfigError(f"{cert_path}: the RA certificate does not match {key_path}")
    return RaIdentity(key, certs[0], certs[0].public_bytes(_DER),
                      tuple(c.public_bytes(_DER) for c in certs[1:]))


def ensure_ra(config: GatehouseConfig, data_dir: Path, profile_name: str, *,
              clock: Clock | None = None) -> RaIdentity:
    """Load the profile's RA, creating (or re-issuing) a generated one when needed."""
    profile = config.profiles[profile_name]
    key_path, cert_path = ra_paths(data_dir, profile_name, profile)
    if profile.scep.ra_cert:
        return load_ra(key_path, cert_path)
    clock = clock or SystemClock()
    with _locked(data_dir / "scep"):
        if key_path.exists() and cert_path.exists():
            identity = load_ra(key_path, cert_path)
            if identity.certificate.not_valid_after_utc - RA_RENEW_BEFORE > clock.now():
                return identity
        _issue(config, data_dir, profile_name, key_path, cert_path, clock)
        return load_ra(key_path, cert_path)


def ensure_ras(config: GatehouseConfig, data_dir: Path) -> None:
    """Create the RA of every SCEP-enabled profile that lacks one (``gatehouse init``).

    A profile without an internal CA to issue its RA and without an imported one is
    skipped (logged): SCEP is then not served for it, and nothing else is blocked.
    """
    for name, profile in config.profiles.items():
        if profile.scep.enabled:
            try:
                ensure_ra(config, data_dir, name)
            except NoRaIssuer as exc:
                log.warning("SCEP not available", extra={"profile": name, "reason": str(exc)})


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One creator at a time: several workers may start together."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = directory / ".lock"
    with os.fdopen(os.open(lock, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def renew_ra(config: GatehouseConfig, data_dir: Path, profile_name: str, *,
             clock: Clock | None = None) -> RaIdentity:
    """A fresh RA key and certificate for a profile, replacing the current generated one
    (``gatehouse scep ra renew``); an imported RA is the operator's to replace."""
    profile = config.profiles[profile_name]
    if profile.scep.ra_cert:
        raise ConfigError(f"profile {profile_name!r} uses an imported RA (scep.ra_cert): "
                          "replace its files instead")
    key_path, cert_path = ra_paths(data_dir, profile_name, profile)
    with _locked(data_dir / "scep"):
        _issue(config, data_dir, profile_name, key_path, cert_path, clock or SystemClock())
        return load_ra(key_path, cert_path)


def _issue(config: GatehouseConfig, data_dir: Path, profile_name: str, key_path: Path,
           cert_path: Path, clock: Clock) -> None:
    """Issue through the pipeline on the built-in RA profile (gateway.system_profiles)."""
    backend = ra_issuer(config, profile_name)
    if backend is None:
        raise NoRaIssuer(f"profile {profile_name!r} serves SCEP but no internal CA can issue "
                          "its RA certificate: set scep.ra_cert and scep.ra_key")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gatehouse"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Gatehouse SCEP RA ({profile_name})"[:64]),
    ])
    replaces = serial_of(cert_path)

    async def issue(gateway: Gateway) -> IssuedCertificate:
        return await issue_system_certificate(gateway, ra_profile_name(config, backend), key,
                                              subject, replaces=replaces)

    try:
        issued = run_with_gateway(config, data_dir, clock, issue)
    except GatewayError as exc:
        raise ConfigError(f"the SCEP RA of profile {profile_name!r} was not issued: "
                          f"{exc.detail}") from exc
    write_private(key_path, key_pem(key))
    write_private(cert_path, x509.load_der_x509_certificate(issued.der).public_bytes(_PEM))


