"""The gateway's own TLS server certificate, issued by the internal CA."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca_backends.internal.certs import LeafPublicKey
from ca_backends.internal.files import (
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    write_file,
)
from gateway.clock import Clock
from gateway.model import Identifier, IdentifierType, IssuedCertificate


class LeafSigner(Protocol):
    """What this module needs of the internal CA (ca_backends.internal.InternalCa)."""

    @property
    def clock(self) -> Clock: ...

    def sign_certificate(
        self,
        public_key: LeafPublicKey,
        *,
        subject: x509.Name,
        sans: Iterable[Identifier],
        not_before: dt.datetime,
        not_after: dt.datetime,
        key_usage: Iterable[str] = (),
        extended_key_usage: Iterable[str] = (),
    ) -> IssuedCertificate: ...

TLS_VALIDITY = dt.timedelta(days=397)  # the CA/Browser Forum ceiling for TLS certificates
_BACKDATE = dt.timedelta(minutes=1)
_MAX_CN = 64  # ub-common-name, RFC 5280 Appendix A


def issue_tls_server_cert(
    ca: LeafSigner,
    hostnames: Sequence[str],
    ips: Sequence[str],
    key_path: Path,
    cert_path: Path,
) -> x509.Certificate:
    """Write a fresh P-256 key and a serverAuth certificate for ``hostnames`` and ``ips``.

    ``cert_path`` gets the leaf followed by the issuing CA (the chain a TLS server sends);
    ``key_path`` gets the key as *unencrypted* PKCS #8 PEM, mode 0600: the TLS server
    loads it unattended at every start, so file permissions are its protection.  Existing
    files are replaced atomically.  Returns the certificate.
    """
    sans = [Identifier(IdentifierType.DNS, name) for name in hostnames]
    sans += [Identifier(IdentifierType.IP, ip) for ip in ips]
    if not sans:
        raise ValueError("a TLS server certificate needs at least one hostname or IP address")
    common_name = sans[0].value
    subject = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        if len(common_name) <= _MAX_CN
        else x509.Name([])
    )
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = ca.clock.now() - _BACKDATE
    issued = ca.sign_certificate(
        key.public_key(),
        subject=subject,
        sans=sans,
        not_before=not_before,
        not_after=not_before + TLS_VALIDITY,
        key_usage={"digital_signature"},
        extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH.dotted_string],
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain_pem = b"".join(
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        for der in (issued.der, issued.chain[0])
    )
    for path in (key_path, cert_path):
        # Created owner-only when missing; an existing directory keeps its mode.
        path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    write_file(key_path, key_pem, PRIVATE_FILE_MODE)
    write_file(cert_path, chain_pem, PUBLIC_FILE_MODE)
    return issued.certificate
