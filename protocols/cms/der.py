"""A small DER writer for the CMS structures Gatehouse emits (X.690 §8, §10, §11).

Why hand-written: asn1crypto's builders cost ~5 ms per message (SCEP and EST answer on
the enrollment hot path), and cryptography's ``pkcs7`` API cannot carry what the
protocols need: no custom signed attributes (SCEP's transactionID, pkiStatus, nonces),
no eContentType other than id-data (CMC PKIResponse, AsymmetricKeyPackage), no EnvelopedData
to an EC recipient or a KEK, no certs-only output with CRLs.  Parsing stays with
asn1crypto; only encoding is done here, and the unit tests check every structure against
asn1crypto and OpenSSL (tests/unit/protocols/test_cms.py).
"""

from __future__ import annotations

import functools

from cryptography import x509

OIDS = {
    "data": "1.2.840.113549.1.7.1", "signed_data": "1.2.840.113549.1.7.2",
    "enveloped_data": "1.2.840.113549.1.7.3", "content_type": "1.2.840.113549.1.9.3",
    "message_digest": "1.2.840.113549.1.9.4", "signing_time": "1.2.840.113549.1.9.5",
    "rsa": "1.2.840.113549.1.1.1", "rsaes_oaep": "1.2.840.113549.1.1.7",
    "mgf1": "1.2.840.113549.1.1.8",
    "sha1": "1.3.14.3.2.26", "sha224": "2.16.840.1.101.3.4.2.4",
    "sha256": "2.16.840.1.101.3.4.2.1", "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3", "sha1_ecdsa": "1.2.840.10045.4.1",
    "sha224_ecdsa": "1.2.840.10045.4.3.1", "sha256_ecdsa": "1.2.840.10045.4.3.2",
    "sha384_ecdsa": "1.2.840.10045.4.3.3", "sha512_ecdsa": "1.2.840.10045.4.3.4",
    "aes128_cbc": "2.16.840.1.101.3.4.1.2", "aes192_cbc": "2.16.840.1.101.3.4.1.22",
    "aes256_cbc": "2.16.840.1.101.3.4.1.42", "tripledes_3key": "1.2.840.113549.3.7",
    "des": "1.3.14.3.2.7", "aes128_wrap": "2.16.840.1.101.3.4.1.5",
    "aes192_wrap": "2.16.840.1.101.3.4.1.25", "aes256_wrap": "2.16.840.1.101.3.4.1.45",
}


def der_tlv(tag: int, content: bytes) -> bytes:
    """One DER element (X.690 §8.1, definite length)."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def der_seq(*parts: bytes) -> bytes:
    return der_tlv(0x30, b"".join(parts))


def der_set(*parts: bytes) -> bytes:
    """SET OF: DER orders the encoded elements (X.690 §11.6)."""
    return der_tlv(0x31, b"".join(sorted(parts)))


def der_int(value: int) -> bytes:
    length = value.bit_length() // 8 + 1
    return der_tlv(0x02, value.to_bytes(length, "big", signed=True))


def der_octets(value: bytes) -> bytes:
    return der_tlv(0x04, value)


def der_printable(value: str) -> bytes:
    return der_tlv(0x13, value.encode("ascii", "replace"))


def der_utf8(value: str) -> bytes:
    return der_tlv(0x0C, value.encode())


def der_oid(name_or_dotted: str) -> bytes:
    return _oid(OIDS.get(name_or_dotted, name_or_dotted))


@functools.lru_cache(maxsize=256)
def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return der_tlv(0x06, bytes(body))


def content_info(content_type: str, content: bytes) -> bytes:
    """ContentInfo (RFC 5652 §3): the content type and the [0] EXPLICIT content."""
    return der_seq(der_oid(content_type), der_tlv(0xA0, content))


def issuer_and_serial_der(certificate_der: bytes) -> bytes:
    """IssuerAndSerialNumber (RFC 5652 §10.2.4) of a certificate."""
    cert = certificate(certificate_der)
    return der_seq(cert.issuer.public_bytes(), der_int(cert.serial_number))


@functools.lru_cache(maxsize=32)
def certificate(der: bytes) -> x509.Certificate:
    """A parsed certificate, cached: the same RA/TLS certificate signs every answer."""
    return x509.load_der_x509_certificate(der)
