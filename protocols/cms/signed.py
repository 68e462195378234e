"""SignedData (RFC 5652 §5): the one signer and the one verifier, for SCEP and EST.

Parsing is asn1crypto's, the maths is cryptography's; the encoding is the small DER writer
of ``protocols.cms.der``, because cryptography's ``pkcs7.PKCS7SignatureBuilder`` adds its
own fixed signed attributes (no SCEP transactionID / pkiStatus / nonces) and signs only
id-data (no CMC PKIResponse, no AsymmetricKeyPackage), and it verifies nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from protocols.cms.der import (
    OIDS,
    content_info,
    der_int,
    der_octets,
    der_oid,
    der_seq,
    der_set,
    der_tlv,
    issuer_and_serial_der,
)
from protocols.cms.errors import CmsBadSignature, CmsMalformed, CmsUnsupportedAlgorithm

DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

_SIGNATURE_DIGESTS = {  # signature algorithm OIDs that name their digest
    "sha1_rsa": "sha1", "sha224_rsa": "sha224", "sha256_rsa": "sha256",
    "sha384_rsa": "sha384", "sha512_rsa": "sha512", "sha1_ecdsa": "sha1",
    "sha224_ecdsa": "sha224", "sha256_ecdsa": "sha256", "sha384_ecdsa": "sha384",
    "sha512_ecdsa": "sha512",
}

_OID_CONTENT_TYPE = OIDS["content_type"]
_OID_MESSAGE_DIGEST = OIDS["message_digest"]

SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


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


# -- verifying (RFC 5652 §5.6) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signer:
    """One SignerInfo that verified."""

    public_key: PublicKey
    certificate: x509.Certificate | None  # None: named by key id among the candidate keys
    certificate_der: bytes | None
    digest: str  # asn1crypto digest name, e.g. "sha256"
    attributes: dict[str, list[core.Asn1Value]]  # signed attributes by dotted OID


@dataclass(frozen=True, slots=True)
class Verified:
    """What verifying a SignedData established: every signer checked."""

    content_type: str  # dotted OID of eContentType
    content: bytes  # the encapsulated content octets (b"" when absent)
    certificates_der: tuple[bytes, ...]
    signers: tuple[Signer, ...]


def verify_signed_data(signed: cms.SignedData, *, allowed_digests: Iterable[str],
                       candidate_keys: Sequence[object] = (), max_signers: int = 1
                       ) -> Verified:
    """Verify every SignerInfo (at least one, at most ``max_signers``), RFC 5652 §5.6.

    A signer named by issuerAndSerialNumber must be one of the ``certificates`` carried
    (issuer and serial both match); one named by subjectKeyIdentifier is looked up among
    the carried certificates and ``candidate_keys`` (for CMC, the keys of the PKCS#10
    requests inside and the TLS client certificate, RFC 5272 §3.2.1.2).  Signed attributes
    are required (SCEP needs them, and RFC 5652 §5.3 does for any content but id-data):
    contentType must equal eContentType (§11.1), messageDigest the content's digest
    (§11.2), and the signature covers their DER SET OF (§5.4).  The signature algorithm
    must agree with the digest and the key.
    """
    allowed = set(allowed_digests)
    try:
        content_type = signed["encap_content_info"]["content_type"].dotted
        content = encapsulated_content(signed)
        certificates = _certificates(signed)
        infos = list(signed["signer_infos"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CmsMalformed("the SignedData cannot be parsed") from exc
    if not infos:
        raise CmsBadSignature("the SignedData is not signed")
    if len(infos) > max_signers:
        raise CmsMalformed(f"expected at most {max_signers} SignerInfo, found {len(infos)}")
    signers = []
    for info in infos:
        try:
            signers.append(_verify_signer(info, content_type, content, certificates,
                                          candidate_keys, allowed))
        except (ValueError, TypeError, KeyError) as exc:
            raise CmsMalformed("a SignerInfo cannot be parsed") from exc
    return Verified(content_type, content, tuple(der for der, _ in certificates),
                    tuple(signers))


def signed_attributes(signer_info: cms.SignerInfo) -> dict[str, list[core.Asn1Value]]:
    """Signed attributes by dotted OID; values parsed as far as asn1crypto knows them."""
    out: dict[str, list[core.Asn1Value]] = {}
    attrs = signer_info["signed_attrs"]
    if not isinstance(attrs, cms.CMSAttributes):
        return out
    for attr in attrs:
        out[attr["type"].dotted] = list(attr["values"])
    return out


def encapsulated_content(signed: cms.SignedData) -> bytes:
    """The eContent octets (b"" when absent)."""
    field = signed["encap_content_info"]["content"]
    if isinstance(field, core.Void):
        return b""
    value = field.native
    return bytes(value) if isinstance(value, bytes) else b""


def same_name(a: asn1_x509.Name, b: asn1_x509.Name) -> bool:
    """Names equal byte for byte (the usual case, cheap) or by RFC 5280 §7.1 comparison."""
    return bool(a.dump() == b.dump() or a == b)


def _certificates(signed: cms.SignedData) -> list[tuple[bytes, asn1_x509.Certificate]]:
    certificates = signed["certificates"]
    if not isinstance(certificates, cms.CertificateSet):
        return []
    return [(bytes(c.chosen.dump()), c.chosen) for c in certificates if c.name == "certificate"]


def _verify_signer(info: cms.SignerInfo, content_type: str, content: bytes,
                   certificates: list[tuple[bytes, asn1_x509.Certificate]],
                   candidate_keys: Sequence[object], allowed: set[str]) -> Signer:
    digest = info["digest_algorithm"]["algorithm"].native
    if digest not in DIGESTS:
        raise CmsUnsupportedAlgorithm(f"digest algorithm {digest} is not supported")
    if digest not in allowed:
        raise CmsUnsupportedAlgorithm(f"digest algorithm {digest} is not allowed")
    public_key, certificate, certificate_der = _signer(info["sid"], certificates,
                                                       candidate_keys)
    attrs = info["signed_attrs"]
    if not isinstance(attrs, cms.CMSAttributes) or len(attrs) == 0:
        raise CmsMalformed("the SignerInfo has no signed attributes")
    attributes = signed_attributes(info)
    types = attributes.get(_OID_CONTENT_TYPE, [])
    if len(types) != 1 or _dotted(types[0]) != content_type:
        raise CmsBadSignature("the content type attribute does not match the content")
    digest_values = attributes.get(_OID_MESSAGE_DIGEST, [])
    if len(digest_values) != 1 or _octets(digest_values[0]) != _digest(digest, content):
        raise CmsBadSignature("the message digest attribute does not match the content")
    _check_signature(public_key, info, digest, _set_of_dump(attrs))
    return Signer(public_key, certificate, certificate_der, digest, attributes)


def _signer(sid: cms.SignerIdentifier, certificates: list[tuple[bytes, asn1_x509.Certificate]],
            candidate_keys: Sequence[object]
            ) -> tuple[PublicKey, x509.Certificate | None, bytes | None]:
    """The signer's key (and certificate, when carried) named by ``sid`` (RFC 5652 §5.3)."""
    for der, cert in certificates:
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            match = (cert.serial_number == wanted["serial_number"].native
                     and same_name(cert.issuer, wanted["issuer"]))
        else:
            # the SKI extension, or RFC 5280 §4.2.1.2 method 1 when the certificate has none
            match = sid.chosen.native in (cert.key_identifier, cert.public_key.sha1)
        if match:
            return _certificate_key(der)
    if sid.name == "subject_key_identifier":
        wanted_id = bytes(sid.chosen.native)
        for key in candidate_keys:
            if isinstance(key, PublicKey) and _public_key_id(key) == wanted_id:
                return key, None, None
    raise CmsBadSignature("the signer's certificate is not in the SignedData")


def _certificate_key(der: bytes) -> tuple[PublicKey, x509.Certificate, bytes]:
    try:
        certificate = x509.load_der_x509_certificate(der)
        public_key = certificate.public_key()
        # cryptography parses names lazily: touch them here so a malformed subject or
        # issuer is a malformed message now, not a ValueError deep in an adapter.
        _ = (certificate.subject, certificate.issuer, certificate.serial_number)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CmsMalformed("the signer certificate cannot be parsed") from exc
    if not isinstance(public_key, PublicKey):
        raise CmsUnsupportedAlgorithm("the signer's key type is not supported")
    return public_key, certificate, der


def _public_key_id(key: object) -> bytes | None:
    try:
        return x509.SubjectKeyIdentifier.from_public_key(key).digest  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _check_signature(public_key: PublicKey, info: cms.SignerInfo, digest: str,
                     data: bytes) -> None:
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
            if algorithm != "ed25519":
                raise CmsUnsupportedAlgorithm(f"signature algorithm {algorithm} is not supported")
            public_key.verify(signature, data)  # RFC 8419 §3: PureEdDSA over the attributes
    except InvalidSignature as exc:
        raise CmsBadSignature("the signature does not verify") from exc


def _set_of_dump(attrs: cms.CMSAttributes) -> bytes:
    """The attributes re-tagged as a universal SET OF, as RFC 5652 §5.4 signs them."""
    encoded: bytes = attrs.dump()
    return b"\x31" + encoded[1:]


def _digest(name: str, data: bytes) -> bytes:
    h = hashes.Hash(DIGESTS[name]())
    h.update(data)
    return h.finalize()


def _dotted(value: core.Asn1Value) -> str | None:
    try:
        return str(core.ObjectIdentifier.load(value.dump()).dotted)
    except (ValueError, TypeError):
        return None


def _octets(value: core.Asn1Value) -> bytes:
    if isinstance(value, core.OctetString):
        return bytes(value.native)
    try:
        return bytes(core.OctetString.load(value.dump()).native)
    except (ValueError, TypeError):
        return b""


# -- signing (RFC 5652 §5.3-§5.5) ----------------------------------------------------------


def attribute(oid: str, value: bytes | core.Asn1Value) -> bytes:
    """One signed attribute with a single value (SCEP's are all single-valued), DER."""
    encoded = value if isinstance(value, bytes) else bytes(value.dump())
    return der_seq(der_oid(oid), der_set(encoded))


def sign(content: bytes | None, *, signer_der: bytes, signer_key: SignerKey, digest: str,
         attributes: Iterable[bytes | cms.CMSAttribute], certificates_der: Iterable[bytes] = (),
         content_type: str = "data") -> bytes:
    """A SignedData ContentInfo with one SignerInfo by issuer and serial (RFC 5652 §5).

    ``content`` None leaves eContent absent.  The contentType and messageDigest attributes
    are added to ``attributes`` (DER-encoded Attribute values, or asn1crypto ones).  The
    signer's certificate is carried with ``certificates_der``, in DER SET OF order.
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
    elif isinstance(signer_key, ec.EllipticCurvePrivateKey):
        signature = signer_key.sign(attrs_set, ec.ECDSA(DIGESTS[digest]()))
        signature_algorithm = der_seq(der_oid(f"{digest}_ecdsa"))
    else:
        raise CmsUnsupportedAlgorithm("the signing key is neither RSA nor EC")
    signer_info = der_seq(
        der_int(1), issuer_and_serial_der(signer_der), der_seq(der_oid(digest)),
        b"\xa0" + attrs_set[1:],  # [0] IMPLICIT SET OF Attribute
        signature_algorithm, der_octets(signature))
    encap = [der_oid(content_type)]
    if content is not None:
        encap.append(der_tlv(0xA0, der_octets(content)))
    certificates = {signer_der, *certificates_der}
    # RFC 5652 §5.1: version 3 when eContentType is not id-data, else 1 (no attribute
    # certificates, no "other" formats, SignerInfo v1).
    version = 1 if OIDS.get(content_type, content_type) == OIDS["data"] else 3
    signed = der_seq(der_int(version), der_set(der_seq(der_oid(digest))), der_seq(*encap),
                     der_tlv(0xA0, b"".join(sorted(certificates))), der_set(signer_info))
    return content_info("signed_data", signed)
