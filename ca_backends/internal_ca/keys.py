"""CA key types, key generation, encrypted key storage format and signature hashes."""

from __future__ import annotations

from enum import StrEnum

from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CaPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
CaPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class KeyType(StrEnum):
    """Key types the internal CA may use for its root and issuing CAs."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"


_RSA_BITS = {KeyType.RSA_2048: 2048, KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}


def generate_private_key(key_type: KeyType) -> CaPrivateKey:
    if key_type is KeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])


def key_type_of(key: CaPrivateKey | CaPublicKey) -> KeyType:
    """The KeyType of an existing key (rollover keeps the root's key type by default)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP384R1):
            return KeyType.EC_P384
        if isinstance(key.curve, ec.SECP256R1):
            return KeyType.EC_P256
        raise ValueError(f"unsupported CA curve {key.curve.name}")
    for key_type, bits in _RSA_BITS.items():
        if key.key_size == bits:
            return key_type
    raise ValueError(f"unsupported CA RSA key size {key.key_size}")


def signature_hash(
    key: CaPrivateKey | CaPublicKey,
) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The digest a CA key signs with.

    ECDSA uses the hash matching the curve strength (RFC 5480 §4: P-256 with SHA-256,
    P-384 with SHA-384); RSA uses SHA-256 with PKCS #1 v1.5 (RFC 4055 §5).
    """
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.key_size > 384:
            return hashes.SHA512()
        if key.curve.key_size > 256:
            return hashes.SHA384()
    return hashes.SHA256()


def encrypt_private_key(key: CaPrivateKey, passphrase: bytes) -> bytes:
    """Encrypted PKCS #8 PEM (RFC 5958 EncryptedPrivateKeyInfo)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def decrypt_private_key(pem: bytes, passphrase: bytes) -> CaPrivateKey:
    """Load an encrypted PEM key; ValueError when the passphrase is wrong or missing."""
    key = serialization.load_pem_private_key(pem, password=passphrase)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported CA key type {type(key).__name__}")
    return key


def public_key_bits(public_key_der: bytes) -> bytes:
    """The subjectPublicKey BIT STRING value of a DER SubjectPublicKeyInfo.

    This is what OCSP's CertID ``issuerKeyHash`` hashes (RFC 6960 §4.1.1), for any key
    algorithm.
    """
    info = asn1_keys.PublicKeyInfo.load(public_key_der)
    contents: bytes = info["public_key"].contents
    return contents[1:]  # the first content octet counts the unused bits (always 0 here)
