"""Helpers every remote-CA backend shares: the gateway's view of a certificate it did not sign.

Neutral ground between the backends (Vault/OpenBao, the ADCS bridge): a backend imports
``ca_backends.base`` and this module, never another backend.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.model import IssuedCertificate, san_identifiers


def issued_certificate(leaf: x509.Certificate, chain: list[x509.Certificate], *, backend: str,
                       backend_ref: str | None) -> IssuedCertificate:
    """The gateway's view of a certificate a remote CA signed (facts read from the DER)."""
    try:
        sans = tuple(san_identifiers(leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value))
    except x509.ExtensionNotFound:
        sans = ()
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        sans = ()  # unreadable: the pipeline's check_issued refuses it (docs/security.md, rule 4)
    return IssuedCertificate(
        serial=format(leaf.serial_number, "x"),
        issuer=leaf.issuer.rfc4514_string(),
        subject=leaf.subject.rfc4514_string(),
        sans=sans,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        der=leaf.public_bytes(Encoding.DER),
        chain=tuple(c.public_bytes(Encoding.DER) for c in chain),
        backend=backend,
        backend_ref=backend_ref,
    )
