"""Create the internal CA, roll its issuing CA over, and load it (keys decrypted once).

An issuing CA *generation* is numbered "1", "2", ...; issuers.json records when each takes
over.  The active issuer at time t is the highest generation whose ``active_from`` <= t,
so a successor can be published (``next_ca_chain``) before it signs anything, and older
generations keep signing CRLs and OCSP answers for the certificates they issued.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ca_backends.base import IssuerInfo
from ca_backends.internal.certs import SigningIssuer, build_issuing_ca, build_root, ca_name
from ca_backends.internal.files import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    CaLayout,
    CaSetupError,
    IssuerRecord,
    make_private_dir,
    read_file,
    read_issuer_records,
    write_file,
    write_issuer_records,
)
from ca_backends.internal.keys import (
    KDF_ITERATIONS,
    CaPrivateKey,
    KeyType,
    decrypt_private_key,
    encrypt_private_key,
    generate_private_key,
    kdf_iterations,
    key_type_of,
)
from gateway.clock import Clock

log = logging.getLogger("gatehouse.ca")

# CA certificates start a little in the past so that clients whose clocks lag accept a
# freshly created CA.
CA_BACKDATE = dt.timedelta(hours=1)
_ROOT_SUFFIX = " Root CA"


@dataclass(frozen=True, slots=True)
class LoadedCa:
    """A CA read from disk: the root certificate and every issuing generation, oldest first."""

    root: x509.Certificate
    issuers: tuple[SigningIssuer, ...]


def init_internal_ca(
    directory: Path,
    passphrase: bytes,
    key_type: KeyType | str = KeyType.EC_P256,
    *,
    clock: Clock,
    subject_prefix: str = "Gatehouse",
    organization: str | None = None,
    root_validity_days: int = 3650,
    issuer_validity_days: int = 1825,
) -> None:
    """Create a root CA and issuing CA generation 1 in ``directory``.

    Keys are encrypted PKCS #8 (0600) under ``passphrase``; the directory is 0700.  Raise
    CaSetupError rather than overwrite an existing CA.
    """
    layout = CaLayout(directory)
    if layout.exists():
        raise CaSetupError(f"{directory} already holds a CA; refusing to overwrite it")
    if not passphrase:
        raise CaSetupError("the CA passphrase is empty")
    kind = _key_type(key_type)
    now = clock.now()
    make_private_dir(directory)
    root_key = generate_private_key(kind)
    root = build_root(
        root_key,
        ca_name(f"{subject_prefix}{_ROOT_SUFFIX}", organization),
        now - CA_BACKDATE,
        now + dt.timedelta(days=root_validity_days),
    )
    issuer = _create_generation(
        layout,
        "1",
        root,
        root_key,
        kind,
        passphrase,
        subject_prefix=subject_prefix,
        not_before=now - CA_BACKDATE,
        not_after=now + dt.timedelta(days=issuer_validity_days),
    )
    write_file(layout.root_key, encrypt_private_key(root_key, passphrase), PRIVATE_FILE_MODE)
    write_file(layout.root_cert, _pem(root), PUBLIC_FILE_MODE)
    # Generation 1 is active from its notBefore, so it serves any clock at or after it.
    write_issuer_records(layout, [IssuerRecord("1", issuer.not_valid_before_utc)])


def rollover(
    directory: Path,
    passphrase: bytes,
    activate_at: dt.datetime,
    clock: Clock,
    *,
    key_type: KeyType | str | None = None,
    validity_days: int = 1825,
    subject_prefix: str | None = None,
) -> IssuerInfo:
    """Create the next issuing CA generation, signed by the root, active from ``activate_at``.

    The key type defaults to the root's, the subject prefix and organization to the
    root's.  Only one future generation may be scheduled at a time, and generations take
    over in order.  Running servers load the new generation when they next start.
    """
    if activate_at.tzinfo is None:
        raise ValueError("activate_at must be timezone-aware")
    layout = CaLayout(directory)
    if not layout.exists():
        raise CaSetupError(f"no internal CA in {directory}: run 'gatehouse init'")
    now = clock.now()
    records = read_issuer_records(layout)
    latest = records[-1]
    if latest.active_from > now:
        raise CaSetupError(
            f"issuing CA {latest.id} is already scheduled to take over at "
            f"{latest.active_from.isoformat()}"
        )
    if activate_at < latest.active_from:
        raise CaSetupError(f"activate_at is before issuing CA {latest.id} took over")
    root = _load_certificate(layout.root_cert)
    if activate_at >= root.not_valid_after_utc:
        raise CaSetupError("activate_at is after the root CA expires")
    root_key = _decrypt(layout.root_key, passphrase)
    kind = key_type_of(root_key) if key_type is None else _key_type(key_type)
    prefix = subject_prefix if subject_prefix is not None else _prefix_of(root)
    new_id = str(int(latest.id) + 1)
    certificate = _create_generation(
        layout,
        new_id,
        root,
        root_key,
        kind,
        passphrase,
        subject_prefix=prefix,
        not_before=now - CA_BACKDATE,
        not_after=activate_at + dt.timedelta(days=validity_days),
    )
    write_issuer_records(layout, [*records, IssuerRecord(new_id, activate_at)])
    return IssuerInfo(id=new_id, certificate=certificate, active_from=activate_at)


def load_ca(directory: Path, passphrase: bytes) -> LoadedCa:
    """Read the CA and decrypt every issuing key; CaSetupError names what is wrong.

    The root key stays encrypted on disk: only ``rollover`` needs it.
    """
    layout = CaLayout(directory)
    if not layout.root_cert.exists() or not layout.issuers_json.exists():
        raise CaSetupError(f"no internal CA in {directory}: run 'gatehouse init'")
    root = _load_certificate(layout.root_cert)
    if _weakly_encrypted(read_file(layout.root_key)):
        _decrypt(layout.root_key, passphrase)  # re-encrypts it with today's KDF cost
    issuers = []
    for record in read_issuer_records(layout):
        certificate = _load_certificate(layout.issuer_cert(record.id))
        key = _decrypt(layout.issuer_key(record.id), passphrase)
        _check_pair(layout.issuer_cert(record.id), certificate, key)
        try:
            certificate.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CaSetupError(
                f"{layout.issuer_cert(record.id)} is not issued by {layout.root_cert}"
            ) from exc
        info = IssuerInfo(id=record.id, certificate=certificate, active_from=record.active_from)
        issuers.append(SigningIssuer.of(info, key))
    return LoadedCa(root=root, issuers=tuple(issuers))


def _create_generation(
    layout: CaLayout,
    issuer_id: str,
    root: x509.Certificate,
    root_key: CaPrivateKey,
    key_type: KeyType,
    passphrase: bytes,
    *,
    subject_prefix: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    key = generate_private_key(key_type)
    organization = _organization_of(root)
    certificate = build_issuing_ca(
        key.public_key(),
        ca_name(f"{subject_prefix} Issuing CA {issuer_id}", organization),
        root,
        root_key,
        not_before,
        not_after,
    )
    make_private_dir(layout.issuer_dir(issuer_id).parent)
    make_private_dir(layout.issuer_dir(issuer_id))
    write_file(
        layout.issuer_key(issuer_id), encrypt_private_key(key, passphrase), PRIVATE_FILE_MODE
    )
    write_file(layout.issuer_cert(issuer_id), _pem(certificate), PUBLIC_FILE_MODE)
    return certificate


def _key_type(value: KeyType | str) -> KeyType:
    try:
        return KeyType(value)
    except ValueError:
        known = ", ".join(kind.value for kind in KeyType)
        raise CaSetupError(f"unknown CA key type {value!r} (known: {known})") from None


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(read_file(path))
    except ValueError as exc:
        raise CaSetupError(f"{path} is not a PEM certificate") from exc


def _decrypt(path: Path, passphrase: bytes) -> CaPrivateKey:
    """Decrypt a CA key; one written by an older version with a cheap KDF (PBKDF2 at
    2,048 iterations) is re-encrypted at ``KDF_ITERATIONS`` on the way (rule 8)."""
    pem = read_file(path)
    try:
        key = decrypt_private_key(pem, passphrase)
    except (ValueError, TypeError) as exc:
        raise CaSetupError(f"cannot decrypt {path}: wrong CA passphrase?") from exc
    if _weakly_encrypted(pem):
        try:
            write_file(path, encrypt_private_key(key, passphrase), PRIVATE_FILE_MODE)
            log.warning("CA key re-encrypted with a stronger key derivation",
                        extra={"path": str(path), "iterations": KDF_ITERATIONS})
        except OSError as exc:
            log.warning("cannot re-encrypt a weakly encrypted CA key",
                        extra={"path": str(path), "error": exc.strerror})
    return key


def _weakly_encrypted(pem: bytes) -> bool:
    iterations = kdf_iterations(pem)
    return iterations is not None and iterations < KDF_ITERATIONS


def _check_pair(path: Path, certificate: x509.Certificate, key: CaPrivateKey) -> None:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        raise CaSetupError(f"the key beside {path} does not belong to it")


def _organization_of(certificate: x509.Certificate) -> str | None:
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        if isinstance(attribute.value, str):
            return attribute.value
    return None


def _prefix_of(root: x509.Certificate) -> str:
    for attribute in root.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if isinstance(attribute.value, str):
            return attribute.value.removesuffix(_ROOT_SUFFIX)
    return "Gatehouse"
