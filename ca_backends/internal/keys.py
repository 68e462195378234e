"""CA key types, key generation, encrypted key storage format and signature hashes."""

from __future__ import annotations

import hashlib
import os
from enum import StrEnum

from asn1crypto import algos as asn1_algos
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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


# PBKDF2-HMAC-SHA256 iterations deriving the key that encrypts a CA key (OWASP's current
# minimum; docs/security.md, rule 8).  cryptography's BestAvailableEncryption uses 2,048
# and offers no way to choose for PKCS #8, so the structure is built here.
KDF_ITERATIONS = 600_000


def encrypt_private_key(key: CaPrivateKey, passphrase: bytes) -> bytes:
    """Encrypted PKCS #8 PEM (RFC 5958 EncryptedPrivateKeyInfo): PBES2 (RFC 8018 §6.2)
    with PBKDF2-HMAC-SHA256 at ``KDF_ITERATIONS`` and AES-256-CBC.

    Any PKCS #8 reader (OpenSSL, cryptography) loads it with the passphrase.
    """
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    salt, iv = os.urandom(16), os.urandom(16)
    kek = hashlib.pbkdf2_hmac("sha256", passphrase, salt, KDF_ITERATIONS, dklen=32)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    info = asn1_keys.EncryptedPrivateKeyInfo({
        "encryption_algorithm": {
            "algorithm": "pbes2",
            "parameters": {
                "key_derivation_func": {
                    "algorithm": "pbkdf2",
                    "parameters": {"salt": asn1_algos.Pbkdf2Salt(
                        name="specified", value=salt), "iteration_count": KDF_ITERATIONS,
                                   "prf": {"algorithm": "sha256"}},
                },
                "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
            },
        },
        "encrypted_data": encrypted,
    })
    return bytes(asn1_pem.armor("ENCRYPTED PRIVATE KEY", info.dump()))


def kdf_iterations(pem: bytes) -> int | None:
    """The PBKDF2 iteration count of an encrypted PKCS #8 PEM key; None for another KDF
    (scrypt, PBES1) or an unreadable file."""
    try:
        _type, _headers, der = asn1_pem.unarmor(pem)
        algorithm = asn1_keys.EncryptedPrivateKeyInfo.load(der)["encryption_algorithm"]
        if algorithm["algorithm"].native != "pbes2":
            return None
        kdf = algorithm["parameters"]["key_derivation_func"]
        if kdf["algorithm"].native != "pbkdf2":
            return None
        count: int = kdf["parameters"]["iteration_count"].native
        return count
    except (ValueError, TypeError, KeyError):
        return None


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
