"""CMS / PKCS#7 helpers shared by EST and SCEP (asn1crypto).

asn1crypto is used because cryptography's PKCS#7 API cannot build or parse the
EnvelopedData and SignedData structures SCEP needs, and its certs-only serializer does
not take DER input as-is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


def certs_only(certificates_der: Iterable[bytes]) -> bytes:
    """A degenerate ("certs-only") SignedData, RFC 5652 §5 / RFC 8894 §3.4 / RFC 7030 §4.1.3.

    No signers, no content: just the certificates, in the order given.
    """
    signed = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [],
        "encap_content_info": {"content_type": "data"},
        "certificates": [asn1_x509.Certificate.load(der) for der in certificates_der],
        "signer_infos": [],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


# -- shared CMS machinery (RFC 5652) used by SCEP (RFC 8894 §3) -------------------------
#
# asn1crypto does the structure, cryptography does the maths.  Errors are typed so that a
# protocol can answer each in its own vocabulary (SCEP failInfo, EST status).


class CmsError(Exception):
    """A CMS structure cannot be used; ``detail`` is safe to show a client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CmsMalformed(CmsError):
    """Not DER, not the expected content type, or a required field is missing."""


class CmsUnsupportedAlgorithm(CmsError):
    """A digest, signature, key transport or content cipher we do not (or may not) use."""


class CmsBadSignature(CmsError):
    """The SignerInfo does not verify (RFC 5652 §5.6)."""


class CmsNotForUs(CmsError):
    """No RecipientInfo names our certificate, or its key does not open the envelope."""


DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# Content ciphers by asn1crypto's encryption-algorithm name: (key bytes, IV bytes).
CIPHERS: dict[str, tuple[int, int]] = {
    "aes128_cbc": (16, 16),
    "aes192_cbc": (24, 16),
    "aes256_cbc": (32, 16),
    "tripledes_3key": (24, 8),
    "des": (8, 8),
}

_SIGNATURE_DIGESTS = {  # signature algorithm OIDs that name their digest
    "sha1_rsa": "sha1", "sha224_rsa": "sha224", "sha256_rsa": "sha256",
    "sha384_rsa": "sha384", "sha512_rsa": "sha512", "sha1_ecdsa": "sha1",
    "sha224_ecdsa": "sha224", "sha256_ecdsa": "sha256", "sha384_ecdsa": "sha384",
    "sha512_ecdsa": "sha512",
}

SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def load_content_info(der: bytes, expected: str) -> cms.ContentInfo:
    """Parse a ContentInfo fully (so later access cannot fail lazily); check its type."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        content_type = info["content_type"].native
        _ = info["content"]  # parses one level: a truncated body fails here
    except (ValueError, TypeError, KeyError) as exc:
        raise CmsMalformed("the message is not a DER-encoded CMS ContentInfo") from exc
    if content_type != expected:
        raise CmsMalformed(f"expected CMS {expected}, got {content_type}")
    return info


@dataclass(frozen=True, slots=True)
class SignerResult:
    """What verifying the one SignerInfo of a SignedData established."""

    certificate: x509.Certificate
    certificate_der: bytes
    digest: str  # asn1crypto digest name, e.g. "sha256"
    attributes: dict[str, list[core.Asn1Value]]  # signed attributes by dotted OID
    content: bytes  # the encapsulated content octets (b"" when absent)


def signed_attributes(signer_info: cms.SignerInfo) -> dict[str, list[core.Asn1Value]]:
    """Signed attributes by dotted OID; values parsed as far as asn1crypto knows them."""
    out: dict[str, list[core.Asn1Value]] = {}
    attrs = signer_info["signed_attrs"]
    if not isinstance(attrs, cms.CMSAttributes):
        return out
    for attr in attrs:
        out[attr["type"].dotted] = list(attr["values"])
    return out


def verify_signed_data(signed: cms.SignedData, *, allowed_digests: Iterable[str]) -> SignerResult:
    """Verify the single SignerInfo against the certificate it names (RFC 5652 §5.6).

    The signer's certificate must be carried in ``certificates`` (SCEP §3.2.1 requires
    it).  Signed attributes are required: the messageDigest must match the content and
    the signature covers the DER SET OF the attributes.
    """
    infos = signed["signer_infos"]
    if len(infos) != 1:
        raise CmsMalformed(f"expected one SignerInfo, found {len(infos)}")
    info = infos[0]
    digest = info["digest_algorithm"]["algorithm"].native
    if digest not in DIGESTS:
        raise CmsUnsupportedAlgorithm(f"digest algorithm {digest} is not supported")
    if digest not in set(allowed_digests):
        raise CmsUnsupportedAlgorithm(f"digest algorithm {digest} is not allowed")
    cert_der = _signer_certificate(signed, info["sid"])
    try:
        certificate = x509.load_der_x509_certificate(cert_der)
        public_key = certificate.public_key()
        # cryptography parses names lazily: touch them here so a malformed subject or
        # issuer is a malformed message now, not a ValueError deep in an adapter.
        _ = (certificate.subject, certificate.issuer, certificate.serial_number)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CmsMalformed("the signer certificate cannot be parsed") from exc
    content = encapsulated_content(signed)
    attrs = info["signed_attrs"]
    if not isinstance(attrs, cms.CMSAttributes) or len(attrs) == 0:
        raise CmsMalformed("the SignerInfo has no signed attributes")
    attributes = signed_attributes(info)
    digest_values = attributes.get("1.2.840.113549.1.9.4", [])
    expected = _digest(digest, content)
    if len(digest_values) != 1 or _octets(digest_values[0]) != expected:
        raise CmsBadSignature("the messageDigest attribute does not match the content")
    _verify(public_key, info, digest, _set_of_dump(attrs))
    return SignerResult(certificate, cert_der, digest, attributes, content)


def encapsulated_content(signed: cms.SignedData) -> bytes:
    """The eContent octets (b"" when absent)."""
    field = signed["encap_content_info"]["content"]
    if isinstance(field, core.Void):
        return b""
    value = field.native
    return bytes(value) if isinstance(value, bytes) else b""


def _set_of_dump(attrs: cms.CMSAttributes) -> bytes:
    """The attributes re-tagged as a universal SET OF, as RFC 5652 §5.4 signs them."""
    encoded: bytes = attrs.dump()
    return b"\x31" + encoded[1:]


def _signer_certificate(signed: cms.SignedData, sid: cms.SignerIdentifier) -> bytes:
    certificates = signed["certificates"]
    if not isinstance(certificates, cms.CertificateSet):
        raise CmsMalformed("the SignedData carries no certificates")
    for choice in certificates:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (cert.serial_number == wanted["serial_number"].native
                    and same_name(cert.issuer, wanted["issuer"])):
                return bytes(cert.dump())
        elif sid.name == "subject_key_identifier":
            if cert.key_identifier == sid.chosen.native:
                return bytes(cert.dump())
    raise CmsMalformed("the signer's certificate is not in the SignedData")


def same_name(a: asn1_x509.Name, b: asn1_x509.Name) -> bool:
    """Names equal byte for byte (the usual case, cheap) or by RFC 5280 §7.1 comparison."""
    return bool(a.dump() == b.dump() or a == b)


def _verify(public_key: object, info: cms.SignerInfo, digest: str, data: bytes) -> None:
    algorithm = info["signature_algorithm"]["algorithm"].native
    signature = info["signature"].native
    named = _SIGNATURE_DIGESTS.get(algorithm)
    if named is not None and named != digest:
        raise CmsUnsupportedAlgorithm("the signature and digest algorithms disagree")
    hash_algorithm = DIGESTS[digest]()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            if algorithm not in ("rsa", "rsassa_pkcs1v15") and not algorithm.endswith("_rsa"):
                raise CmsUnsupportedAlgorithm(f"signature algorithm {algorithm} is not supported")
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if algorithm != "ecdsa" and not algorithm.endswith("_ecdsa"):
                raise CmsUnsupportedAlgorithm(f"signature algorithm {algorithm} is not supported")
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        else:
            raise CmsUnsupportedAlgorithm("the signer's key type is not supported")
    except InvalidSignature as exc:
        raise CmsBadSignature("the signature does not verify") from exc


def _digest(name: str, data: bytes) -> bytes:
    h = hashes.Hash(DIGESTS[name]())
    h.update(data)
    return h.finalize()


def _octets(value: core.Asn1Value) -> bytes:
    if isinstance(value, core.OctetString):
        return bytes(value.native)
    try:
        return bytes(core.OctetString.load(value.dump()).native)
    except (ValueError, TypeError):
        return b""


# -- building (a small DER writer: asn1crypto's builders cost ~5 ms per message) --------

OIDS = {
    "data": "1.2.840.113549.1.7.1", "signed_data": "1.2.840.113549.1.7.2",
    "enveloped_data": "1.2.840.113549.1.7.3", "content_type": "1.2.840.113549.1.9.3",
    "message_digest": "1.2.840.113549.1.9.4", "rsa": "1.2.840.113549.1.1.1",
    "sha1": "1.3.14.3.2.26", "sha224": "2.16.840.1.101.3.4.2.4",
    "sha256": "2.16.840.1.101.3.4.2.1", "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3", "sha1_ecdsa": "1.2.840.10045.4.1",
    "sha224_ecdsa": "1.2.840.10045.4.3.1", "sha256_ecdsa": "1.2.840.10045.4.3.2",
    "sha384_ecdsa": "1.2.840.10045.4.3.3", "sha512_ecdsa": "1.2.840.10045.4.3.4",
    "aes128_cbc": "2.16.840.1.101.3.4.1.2", "aes192_cbc": "2.16.840.1.101.3.4.1.22",
    "aes256_cbc": "2.16.840.1.101.3.4.1.42", "tripledes_3key": "1.2.840.113549.3.7",
    "des": "1.3.14.3.2.7",
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


def issuer_and_serial_der(certificate_der: bytes) -> bytes:
    """IssuerAndSerialNumber (RFC 5652 §10.2.4) of a certificate."""
    cert = _cert(certificate_der)
    return der_seq(cert.issuer.public_bytes(), der_int(cert.serial_number))


@functools.lru_cache(maxsize=32)
def _cert(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def attribute(oid: str, value: bytes | core.Asn1Value) -> bytes:
    """One signed attribute with a single value (SCEP's are all single-valued), DER."""
    encoded = value if isinstance(value, bytes) else bytes(value.dump())
    return der_seq(der_oid(oid), der_set(encoded))


def sign(content: bytes | None, *, signer_der: bytes, signer_key: SignerKey, digest: str,
         attributes: Iterable[bytes | cms.CMSAttribute], certificates_der: Iterable[bytes] = (),
         content_type: str = "data") -> bytes:
    """A SignedData ContentInfo with one SignerInfo by issuer and serial (RFC 5652 §5).

    ``content`` None leaves eContent absent.  The contentType and messageDigest attributes
    are added to ``attributes`` (DER-encoded Attribute values, or asn1crypto ones).
    """
    signed_attrs = [
        attribute(OIDS["content_type"], der_oid(content_type)),
        attribute(OIDS["message_digest"], der_octets(_digest(digest, content or b""))),
        *(a if isinstance(a, bytes) else bytes(a.dump()) for a in attributes),
    ]
    attrs_set = der_set(*signed_attrs)
    if isinstance(signer_key, rsa.RSAPrivateKey):
        signature = signer_key.sign(attrs_set, padding.PKCS1v15(), DIGESTS[digest]())
        signature_algorithm = der_seq(der_oid("rsa"), b"\x05\x00")
    else:
        signature = signer_key.sign(attrs_set, ec.ECDSA(DIGESTS[digest]()))
        signature_algorithm = der_seq(der_oid(f"{digest}_ecdsa"))
    signer_info = der_seq(
        der_int(1), issuer_and_serial_der(signer_der), der_seq(der_oid(digest)),
        b"\xa0" + attrs_set[1:],  # [0] IMPLICIT SET OF Attribute
        signature_algorithm, der_octets(signature))
    encap = [der_oid(content_type)]
    if content is not None:
        encap.append(der_tlv(0xA0, der_octets(content)))
    certificates = [signer_der, *(d for d in certificates_der if d != signer_der)]
    signed = der_seq(der_int(1), der_set(der_seq(der_oid(digest))), der_seq(*encap),
                     der_tlv(0xA0, b"".join(sorted(certificates))), der_set(signer_info))
    return content_info("signed_data", signed)


def content_info(content_type: str, content: bytes) -> bytes:
    return der_seq(der_oid(content_type), der_tlv(0xA0, content))


def degenerate(certificates_der: Iterable[bytes], crls_der: Iterable[bytes] = ()) -> bytes:
    """A certs-only SignedData (RFC 8894 §3.4), optionally with CRLs, DER-sorted."""
    parts = [der_int(1), der_set(), der_seq(der_oid("data")),
             der_tlv(0xA0, b"".join(sorted(certificates_der)))]
    crls = b"".join(sorted(crls_der))
    if crls:
        parts.append(der_tlv(0xA1, crls))
    parts.append(der_set())
    return content_info("signed_data", der_seq(*parts))
