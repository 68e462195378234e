"""SCEP registration authority (RA) identities: one RSA key and certificate per profile.

SCEP (RFC 8894 §2.1, §3) needs a key that clients encrypt their requests to and that
signs the server's replies.  Gatehouse never hands a CA key to a protocol: each SCEP
profile has its own RA, so SCEP works in front of any backend (internal CA, Vault, ADCS).

Where it lives: ``<data>/scep/<profile>/ra.key`` and ``ra.pem``, created at ``gatehouse
init``/``up`` (and lazily at start when missing) with an RSA-2048 key (RSA because SCEP
clients encrypt to it with RSA key transport) and a certificate from the first internal
CA (keyUsage digitalSignature + keyEncipherment).  Or imported: ``scep.ra_cert`` and
``scep.ra_key`` name PEM files.

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

from ca_backends.base import BackendContext
from ca_backends.internal import InternalCaConfig, build_internal_ca
from gateway.clock import Clock, SystemClock
from gateway.config import GatehouseConfig, ProfileConfig, resolve_path
from gateway.errors import ConfigError

RA_VALIDITY = dt.timedelta(days=730)
RA_RENEW_BEFORE = dt.timedelta(days=30)
_BACKDATE = dt.timedelta(minutes=5)
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


def _issue(config: GatehouseConfig, data_dir: Path, profile_name: str, key_path: Path,
           cert_path: Path, clock: Clock) -> None:
    profile = config.profiles[profile_name]
    names = [profile.backend, *config.backends]
    entry_name = next((n for n in names if isinstance(config.backends.get(n), InternalCaConfig)),
                      None)
    if entry_name is None:
        raise NoRaIssuer(f"profile {profile_name!r} serves SCEP but no internal CA can issue "
                          "its RA certificate: set scep.ra_cert and scep.ra_key")
    entry = config.backends[entry_name]
    assert isinstance(entry, InternalCaConfig)
    context = BackendContext(data_dir=str(data_dir), public_http_url=config.public_http_url(),
                             clock=clock)
    ca = build_internal_ca(entry_name, entry, context)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    not_before = clock.now() - _BACKDATE
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gatehouse"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Gatehouse SCEP RA ({profile_name})"[:64]),
    ])
    issued = ca.sign_certificate(key.public_key(), subject=subject, sans=(),
                                 not_before=not_before, not_after=not_before + RA_VALIDITY,
                                 key_usage={"digital_signature", "key_encipherment"})
    key_pem = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = x509.load_der_x509_certificate(issued.der).public_bytes(_PEM)
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o600)  # public, but the data dir is owner-only (rule 8)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
