"""What EST encrypts for server-generated keys (RFC 7030 §4.4.2); the CMS is protocols.cms.

The key travels as an AsymmetricKeyPackage (RFC 5958 §2, ``id-ct-KP-aKeyPackage``) holding
the one PKCS#8 OneAsymmetricKey, signed by the gateway (SignedData, see
protocols.est.signer), and that SignedData is the content of the EnvelopedData:
AES-256-CBC under a fresh content key, transported to the recipient's RSA key with
RSAES-OAEP/SHA-256 (RFC 3560); the recipient is named by its subjectKeyIdentifier
(RFC 5652 §6.2.1).  For DecryptKeyIdentifier the content key is wrapped with a
pre-shared AES key instead (KEKRecipientInfo).
"""

from __future__ import annotations

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import ErrorKind, GatewayError
from protocols import cms

OID_KEY_PACKAGE = "2.16.840.1.101.2.1.2.78.5"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"


def key_package(pkcs8_der: bytes) -> bytes:
    """AsymmetricKeyPackage ::= SEQUENCE SIZE (1..MAX) OF OneAsymmetricKey."""
    return bytes(core.Sequence(contents=pkcs8_der).dump())


def envelope_for_kek(key_id: bytes, kek: bytes, content: bytes,
                     content_type: str = OID_SIGNED_DATA) -> bytes:
    """EnvelopedData for a pre-shared AES key (KEKRecipientInfo, RFC 5652 §6.2.3; AES key
    wrap, RFC 3394), for DecryptKeyIdentifier (RFC 7030 §4.4.1.1)."""
    try:
        return cms.envelope_for_kek(content, key_id=key_id, kek=kek, content_type=content_type)
    except cms.CmsUnsupportedAlgorithm as exc:
        raise GatewayError(ErrorKind.INTERNAL,
                           "a configured KEK is not 16, 24 or 32 bytes") from exc


def envelope_for(recipient: x509.Certificate, content: bytes,
                 content_type: str = OID_SIGNED_DATA) -> bytes:
    """EnvelopedData of ``content`` (DER of ``content_type``) for ``recipient``."""
    if not isinstance(recipient.public_key(), rsa.RSAPublicKey):
        raise GatewayError(ErrorKind.UNSUPPORTED, "encrypted server-generated keys need an "
                           "RSA recipient certificate")
    return cms.envelope(content, [recipient.public_bytes(Encoding.DER)],
                        content_type=content_type, rsa_oaep=True)
