"""CMS EnvelopedData for server-generated keys (RFC 7030 §4.4.2, RFC 5652 §6).

The key travels as an AsymmetricKeyPackage (RFC 5958 §2, ``id-ct-KP-aKeyPackage``) holding
the one PKCS#8 OneAsymmetricKey, signed by the gateway (SignedData, see
protocols.est.signer), and that SignedData is the content of the EnvelopedData:
AES-256-CBC under a fresh content key, transported to the recipient's RSA key with
RSAES-OAEP/SHA-256 (RFC 3560); the recipient is named by its subjectKeyIdentifier
(RFC 5652 §6.2.1).  For DecryptKeyIdentifier the content key is wrapped with a
pre-shared AES key instead (KEKRecipientInfo).
"""

from __future__ import annotations

import os

from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from gateway.errors import ErrorKind, GatewayError

OID_KEY_PACKAGE = "2.16.840.1.101.2.1.2.78.5"


def key_package(pkcs8_der: bytes) -> bytes:
    """AsymmetricKeyPackage ::= SEQUENCE SIZE (1..MAX) OF OneAsymmetricKey."""
    return bytes(core.Sequence(contents=pkcs8_der).dump())


OID_SIGNED_DATA = "1.2.840.113549.1.7.2"


def _encrypt(content: bytes, content_type: str,
             recipient_info: cms.RecipientInfo, content_key: bytes) -> bytes:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    plaintext = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    # RFC 5652 §6.1: version 2 with a v2 (key identifier) ktri or with a kekri.
    enveloped = cms.EnvelopedData({
        "version": "v2",
        "recipient_infos": [recipient_info],
        "encrypted_content_info": {
            "content_type": content_type,
            "content_encryption_algorithm": {"algorithm": "aes256_cbc",
                                             "parameters": core.OctetString(iv)},
            "encrypted_content": ciphertext,
        },
    })
    return bytes(cms.ContentInfo({"content_type": "enveloped_data",
                                  "content": enveloped}).dump())


_WRAP = {16: "aes128_wrap", 24: "aes192_wrap", 32: "aes256_wrap"}


def envelope_for_kek(key_id: bytes, kek: bytes, content: bytes,
                     content_type: str = OID_SIGNED_DATA) -> bytes:
    """EnvelopedData for a pre-shared AES key (KEKRecipientInfo, RFC 5652 §6.2.3; AES key
    wrap, RFC 3394), for DecryptKeyIdentifier (RFC 7030 §4.4.1.1)."""
    if len(kek) not in _WRAP:
        raise GatewayError(ErrorKind.INTERNAL, "a configured KEK is not 16, 24 or 32 bytes")
    content_key = os.urandom(32)
    recipient_info = cms.RecipientInfo(name="kekri", value=cms.KEKRecipientInfo({
        "version": "v4",
        "kekid": {"key_identifier": key_id},
        "key_encryption_algorithm": {"algorithm": _WRAP[len(kek)]},
        "encrypted_key": aes_key_wrap(kek, content_key),
    }))
    return _encrypt(content, content_type, recipient_info, content_key)


def envelope_for(recipient: x509.Certificate, content: bytes,
                 content_type: str = OID_SIGNED_DATA) -> bytes:
    """EnvelopedData of ``content`` (DER of ``content_type``) for ``recipient``."""
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise GatewayError(ErrorKind.UNSUPPORTED, "encrypted server-generated keys need an "
                           "RSA recipient certificate")
    try:
        ski = recipient.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(public_key).digest
    content_key = os.urandom(32)
    wrapped = public_key.encrypt(content_key, OAEP(MGF1(hashes.SHA256()), hashes.SHA256(), None))
    oaep = algos.RSAESOAEPParams({
        "hash_algorithm": {"algorithm": "sha256"},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
    })
    recipient_info = cms.RecipientInfo(name="ktri", value=cms.KeyTransRecipientInfo({
        "version": "v2",
        "rid": cms.RecipientIdentifier(name="subject_key_identifier",
                                       value=core.OctetString(ski)),
        "key_encryption_algorithm": {"algorithm": "rsaes_oaep", "parameters": oaep},
        "encrypted_key": wrapped,
    }))
    return _encrypt(content, content_type, recipient_info, content_key)
