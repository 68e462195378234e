"""EnvelopedData (RFC 5652 §6): the one encryptor and decryptor, for SCEP and EST.

Encryption: the content under a fresh content key (AES-CBC; 3DES / DES for legacy SCEP
devices), the key delivered to each recipient by RSA key transport (PKCS #1 v1.5 by
issuer and serial for SCEP, RFC 8894 §3.2.2; RSAES-OAEP/SHA-256 by key identifier for EST
server-generated keys, RFC 7030 §4.4.2 / RFC 4055), ECDH key agreement to an EC
recipient (RFC 5753) or AES key wrap under a pre-shared key (KEKRecipientInfo, RFC 5652
§6.2.3, for EST's DecryptKeyIdentifier).  Decryption: RSA key transport addressed to our
certificate, accepting the constructed (BER) encryptedContent that Go's pkcs7 (micromdm
scepclient) sends.

Hand-written because cryptography's ``pkcs7.PKCS7EnvelopeBuilder`` encrypts only to RSA
certificates by issuer and serial (no key identifier, no EC recipient, no KEK, no
choice of content type: EST wraps a SignedData, not id-data) and
``pkcs7_decrypt_der`` refuses 3DES/DES and the BER form; asn1crypto is used to parse, the
DER writer of ``protocols.cms.der`` to encode (see there for why).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from asn1crypto import cms, parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.cms.der import (
    content_info,
    der_int,
    der_octets,
    der_oid,
    der_seq,
    der_set,
    der_tlv,
    issuer_and_serial_der,
)
from protocols.cms.errors import CmsMalformed, CmsNotForUs, CmsUnsupportedAlgorithm
from protocols.cms.signed import same_name

# Content ciphers by asn1crypto's encryption-algorithm name: (key bytes, IV bytes).
CIPHERS: dict[str, tuple[int, int]] = {
    "aes128_cbc": (16, 16),
    "aes192_cbc": (24, 16),
    "aes256_cbc": (32, 16),
    "tripledes_3key": (24, 8),
    "des": (8, 8),
}


def _cipher(name: str, key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    if name.startswith("aes"):
        return Cipher(algorithms.AES(key), modes.CBC(iv))
    if name == "des":  # single DES is 3DES with K1 = K2 = K3
        return Cipher(TripleDES(key * 3), modes.CBC(iv))
    return Cipher(TripleDES(key), modes.CBC(iv))


def envelope(content: bytes, recipients_der: Iterable[bytes], *, cipher: str = "aes256_cbc",
             content_type: str = "data", rsa_oaep: bool = False) -> bytes:
    """An EnvelopedData ContentInfo (RFC 5652 §6.1) of ``content`` (DER of ``content_type``).

    RSA recipients get key transport: PKCS #1 v1.5, named by issuer and serial (SCEP), or
    with ``rsa_oaep`` RSAES-OAEP/SHA-256 named by subjectKeyIdentifier (EST).  EC
    recipients (a device that signed with an EC key) get ephemeral-static ECDH key
    agreement with the X9.63 SHA-256 KDF and AES-256 key wrap (RFC 5753 §3.1,
    dhSinglePass-stdDH-sha256kdf-scheme).
    """
    key_len, _iv_len = CIPHERS[cipher]
    key = os.urandom(key_len)
    infos = []
    for der in recipients_der:
        public_key = x509.load_der_x509_certificate(der).public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            infos.append(_key_transport_oaep(der, public_key, key) if rsa_oaep else
                         der_seq(der_int(0), issuer_and_serial_der(der),
                                 der_seq(der_oid("rsa"), b"\x05\x00"),
                                 der_octets(public_key.encrypt(key, padding.PKCS1v15()))))
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            infos.append(_key_agreement(der, public_key, key))
        else:
            raise CmsUnsupportedAlgorithm("replies can be encrypted to RSA or EC keys only")
    # RFC 5652 §6.1: version 0 when every RecipientInfo is a v0 ktri, else 2.
    version = 2 if rsa_oaep or any(i[:1] != b"\x30" for i in infos) else 0
    return _enveloped(content, content_type, cipher, key, infos, version)


_KEK_WRAP = {16: "aes128_wrap", 24: "aes192_wrap", 32: "aes256_wrap"}


def envelope_for_kek(content: bytes, *, key_id: bytes, kek: bytes,
                     content_type: str = "data") -> bytes:
    """EnvelopedData to a pre-shared AES key: KEKRecipientInfo v4 (RFC 5652 §6.2.3) with
    AES key wrap (RFC 3394), AES-256-CBC content."""
    if len(kek) not in _KEK_WRAP:
        raise CmsUnsupportedAlgorithm("a key-encryption key is 16, 24 or 32 bytes")
    key = os.urandom(32)
    kekri = der_tlv(0xA2, der_int(4) + der_seq(der_octets(key_id))  # [2] IMPLICIT
                    + der_seq(der_oid(_KEK_WRAP[len(kek)]))
                    + der_octets(aes_key_wrap(kek, key)))
    return _enveloped(content, content_type, "aes256_cbc", key, [kekri], 2)


def _enveloped(content: bytes, content_type: str, cipher: str, key: bytes,
               recipient_infos: list[bytes], version: int) -> bytes:
    _key_len, iv_len = CIPHERS[cipher]
    iv = os.urandom(iv_len)
    padder = sym_padding.PKCS7(iv_len * 8).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = _cipher(cipher, key, iv).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    encrypted_info = der_seq(der_oid(content_type), der_seq(der_oid(cipher), der_octets(iv)),
                             der_tlv(0x80, encrypted))  # [0] IMPLICIT OCTET STRING
    return content_info("enveloped_data",
                        der_seq(der_int(version), der_set(*recipient_infos), encrypted_info))


def _key_transport_oaep(recipient_der: bytes, recipient: rsa.RSAPublicKey,
                        content_key: bytes) -> bytes:
    """KeyTransRecipientInfo v2 by subjectKeyIdentifier, RSAES-OAEP/SHA-256 (RFC 5652
    §6.2.1, RFC 4055)."""
    cert = x509.load_der_x509_certificate(recipient_der)
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(recipient).digest
    sha256 = der_seq(der_oid("sha256"))
    params = der_seq(der_tlv(0xA0, sha256), der_tlv(0xA1, der_seq(der_oid("mgf1"), sha256)))
    wrapped = recipient.encrypt(content_key, padding.OAEP(padding.MGF1(hashes.SHA256()),
                                                          hashes.SHA256(), None))
    return der_seq(der_int(2), der_tlv(0x80, ski),  # rid [0] IMPLICIT SubjectKeyIdentifier
                   der_seq(der_oid("rsaes_oaep"), params), der_octets(wrapped))


_ECDH_SHA256_KDF = "1.3.132.1.11.1"  # dhSinglePass-stdDH-sha256kdf-scheme (RFC 5753 §7.1.4)
_EC_PUBLIC_KEY = "1.2.840.10045.2.1"


def _key_agreement(recipient_der: bytes, recipient: ec.EllipticCurvePublicKey,
                   content_key: bytes) -> bytes:
    """KeyAgreeRecipientInfo, [1] IMPLICIT in RecipientInfo (RFC 5652 §6.2.2)."""
    ephemeral = ec.generate_private_key(recipient.curve)
    shared = ephemeral.exchange(ec.ECDH(), recipient)
    wrap_algorithm = der_seq(der_oid("aes256_wrap"))
    shared_info = der_seq(wrap_algorithm, der_tlv(0xA2, der_octets((256).to_bytes(4, "big"))))
    kek = X963KDF(hashes.SHA256(), 32, shared_info).derive(shared)
    point = ephemeral.public_key().public_bytes(Encoding.X962,
                                                PublicFormat.UncompressedPoint)
    originator = der_tlv(0xA0, der_tlv(0xA1, der_seq(der_oid(_EC_PUBLIC_KEY))
                                       + der_tlv(0x03, b"\x00" + point)))
    encrypted_key = der_seq(der_seq(issuer_and_serial_der(recipient_der),
                                    der_octets(aes_key_wrap(kek, content_key))))
    body = (der_int(3) + originator
            + der_seq(der_oid(_ECDH_SHA256_KDF), wrap_algorithm) + encrypted_key)
    return der_tlv(0xA1, body)


@dataclass(frozen=True, slots=True)
class Opened:
    content: bytes
    cipher: str  # asn1crypto name of the content cipher the sender chose


def open_envelope(enveloped: cms.EnvelopedData, *, certificate_der: bytes,
                  key: rsa.RSAPrivateKey, allowed_ciphers: Iterable[str]) -> Opened:
    """Decrypt an EnvelopedData addressed to ``certificate_der`` (RFC 5652 §6.2.1)."""
    ours = asn1_x509.Certificate.load(certificate_der)
    encrypted_key = None
    for info in enveloped["recipient_infos"]:
        if info.name != "ktri":
            continue
        rid = info.chosen["rid"]
        if rid.name == "issuer_and_serial_number":
            named = rid.chosen
            match = (named["serial_number"].native == ours.serial_number
                     and same_name(named["issuer"], ours.issuer))
        else:
            match = rid.chosen.native == ours.key_identifier
        if match:
            scheme = info.chosen["key_encryption_algorithm"]["algorithm"].native
            encrypted_key = (scheme, bytes(info.chosen["encrypted_key"].native))
            break
    if encrypted_key is None:
        raise CmsNotForUs("the message is not encrypted to this server's RA certificate")
    content_info = enveloped["encrypted_content_info"]
    algorithm = content_info["content_encryption_algorithm"]
    cipher = algorithm["algorithm"].native
    if cipher not in CIPHERS:
        raise CmsUnsupportedAlgorithm(f"content cipher {cipher} is not supported")
    if cipher not in set(allowed_ciphers):
        raise CmsUnsupportedAlgorithm(f"content cipher {cipher} is not allowed")
    key_len, iv_len = CIPHERS[cipher]
    iv = algorithm["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != iv_len:
        raise CmsMalformed("the content cipher's IV is missing or has the wrong size")
    scheme, wrapped = encrypted_key
    try:
        if scheme == "rsaes_pkcs1v15" or scheme == "rsa":
            content_key = key.decrypt(wrapped, padding.PKCS1v15())
        elif scheme == "rsaes_oaep":
            # RFC 3560 default parameters; SHA-1 here is the OAEP mask, not a signature.
            sha1 = hashes.SHA1()  # noqa: S303
            content_key = key.decrypt(wrapped, padding.OAEP(padding.MGF1(sha1), sha1, None))
        else:
            raise CmsUnsupportedAlgorithm(f"key transport {scheme} is not supported")
    except ValueError as exc:
        raise CmsNotForUs("the content key cannot be decrypted with this server's RA key") from exc
    if len(content_key) != key_len:
        raise CmsNotForUs("the decrypted content key has the wrong size")
    ciphertext = _encrypted_content(content_info)
    if not isinstance(ciphertext, bytes) or not ciphertext or len(ciphertext) % iv_len:
        raise CmsMalformed("the encrypted content is missing or truncated")
    decryptor = _cipher(cipher, content_key, iv).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    try:
        unpadder = sym_padding.PKCS7(iv_len * 8).unpadder()
        content = unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise CmsNotForUs("the envelope does not decrypt (bad padding)") from exc
    return Opened(content, cipher)


def _encrypted_content(content_info: cms.EncryptedContentInfo) -> bytes | None:
    """encryptedContent, primitive or constructed ([0] of OCTET STRING chunks, BER).

    Go's pkcs7 (micromdm scepclient) sends the constructed form, which asn1crypto's
    implicit OCTET STRING refuses.
    """
    data: bytes = content_info.contents
    offset = 0
    index = 0
    while offset < len(data):
        _cls, method, tag, header, contents, trailer = parser.parse(data[offset:])
        offset += len(header) + len(contents) + len(trailer)
        if index == 2 and tag == 0:
            return _octet_chunks(contents) if method == 1 else contents
        index += 1
    return None


def _octet_chunks(data: bytes, depth: int = 0) -> bytes:
    if depth > 4:
        raise CmsMalformed("the encrypted content nests too deeply")
    out = []
    offset = 0
    while offset < len(data):
        _cls, method, _tag, header, contents, trailer = parser.parse(data[offset:])
        offset += len(header) + len(contents) + len(trailer)
        out.append(_octet_chunks(contents, depth + 1) if method == 1 else contents)
    return b"".join(out)
