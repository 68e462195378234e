"""CMS SignedData for Full PKI Requests and Responses (RFC 5652 §5, RFC 5272 §3.2).

``open_signed`` unwraps a request and checks every signature (RFC 5652 §5.6); signers are
named by subjectKeyIdentifier or issuerAndSerialNumber and are looked up among the keys
the caller offers (the CSR keys of the message, its certificates, the TLS client
certificate).  ``sign`` wraps a response, signed by the gateway's TLS server key (the
server identity the client already authenticated, RFC 7030 §3.3.1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import ErrorKind, GatewayError

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


@dataclass(frozen=True, slots=True)
class SignedContent:
    content_type: str
    content: bytes
    certificates: tuple[x509.Certificate, ...]
    signer_keys: tuple[Any, ...]  # the public keys that signed it


def bad_message(detail: str) -> GatewayError:
    return GatewayError(ErrorKind.BAD_SIGNATURE, detail)


def _key_id(key: Any) -> bytes:
    return x509.SubjectKeyIdentifier.from_public_key(key).digest


def open_signed(der: bytes, candidate_keys: Sequence[Any]) -> SignedContent:
    """Parse ContentInfo(SignedData) and verify each signer; raise MALFORMED/BAD_SIGNATURE."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise GatewayError(ErrorKind.MALFORMED, "the CMC request is not CMS SignedData")
        signed = info["content"]
        encap = signed["encap_content_info"]
        content_type = encap["content_type"].dotted
        content = encap["content"]
        content_bytes = bytes(content.native) if content.native is not None else b""
        certs = tuple(x509.load_der_x509_certificate(c.chosen.dump())
                      for c in (signed["certificates"] or []) if c.name == "certificate")
        signer_infos = list(signed["signer_infos"])
    except (ValueError, TypeError, KeyError) as exc:
        raise GatewayError(ErrorKind.MALFORMED, "the CMC request is not valid CMS") from exc
    keys = [*candidate_keys, *(c.public_key() for c in certs)]
    by_key_id = {}
    for key in keys:
        try:
            by_key_id[_key_id(key)] = key
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    if not signer_infos:
        raise bad_message("the CMC request is not signed (RFC 5272 §3.2.1.2)")
    signers = []
    for signer in signer_infos:
        try:
            key = _signer_key(signer, by_key_id, certs)
            _verify(signer, key, content_type, content_bytes)
        except (ValueError, TypeError, KeyError) as exc:
            raise GatewayError(ErrorKind.MALFORMED, "a SignerInfo cannot be parsed") from exc
        signers.append(key)
    return SignedContent(content_type, content_bytes, certs, tuple(signers))


def _signer_key(signer: cms.SignerInfo, by_key_id: dict[bytes, Any],
                certs: tuple[x509.Certificate, ...]) -> Any:
    sid = signer["sid"]
    if sid.name == "subject_key_identifier":
        key = by_key_id.get(bytes(sid.chosen.native))
    else:
        serial = sid.chosen["serial_number"].native
        key = next((c.public_key() for c in certs if c.serial_number == serial), None)
    if key is None:
        raise bad_message("the CMC request's signer is unknown")
    return key


def _verify(signer: cms.SignerInfo, key: Any, content_type: str, content: bytes) -> None:
    digest_name = signer["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise bad_message(f"unsupported digest algorithm {digest_name}")
    hash_cls = _HASHES[digest_name]
    signed_attrs = signer["signed_attrs"]
    if signed_attrs.native is not None and len(signed_attrs):
        attrs = {a["type"].native: a["values"][0] for a in signed_attrs}
        digest = attrs.get("message_digest")
        if digest is None or bytes(digest.native) != hashlib.new(digest_name, content).digest():
            raise bad_message("the CMC request's message digest does not match")
        ctype = attrs.get("content_type")
        if ctype is None or ctype.dotted != content_type:
            raise bad_message("the CMC request's content-type attribute does not match")
        data = signed_attrs.untag().dump(force=False)
        data = b"\x31" + data[1:]  # DER of the SET OF, not the [0] IMPLICIT tag
    else:
        data = content
    signature = bytes(signer["signature"].native)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_cls())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_cls()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise bad_message("unsupported signer key type")
    except InvalidSignature:
        raise bad_message("the CMC request's signature does not verify") from None


def sign(content_type: str, content: bytes, signer_cert: x509.Certificate, signer_key: Any,
         certificates: Sequence[bytes], now: dt.datetime) -> bytes:
    """ContentInfo(SignedData) over ``content`` with contentType/messageDigest/signingTime."""
    digest = hashlib.sha256(content).digest()
    signed_attrs = cms.CMSAttributes([
        {"type": "content_type", "values": [content_type]},
        {"type": "message_digest", "values": [digest]},
        {"type": "signing_time", "values": [cms.Time(name="utc_time", value=now)]},
    ])
    to_sign = signed_attrs.dump()
    if isinstance(signer_key, ec.EllipticCurvePrivateKey):
        signature = signer_key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        algorithm = "sha256_ecdsa"
    elif isinstance(signer_key, rsa.RSAPrivateKey):
        signature = signer_key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        algorithm = "sha256_rsa"
    else:
        raise GatewayError(ErrorKind.INTERNAL, "the response signing key is not EC or RSA")
    from asn1crypto import x509 as asn1_x509

    signer_asn1 = asn1_x509.Certificate.load(signer_cert.public_bytes(Encoding.DER))
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": signer_asn1.issuer, "serial_number": signer_asn1.serial_number}),
        "digest_algorithm": {"algorithm": "sha256"},
        "signed_attrs": signed_attrs,
        "signature_algorithm": {"algorithm": algorithm},
        "signature": signature,
    })
    all_certs = [*certificates, signer_cert.public_bytes(Encoding.DER)]
    signed = cms.SignedData({
        "version": "v3",
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": content_type,
                               "content": core.ParsableOctetString(content)},
        "certificates": [asn1_x509.Certificate.load(c) for c in all_certs],
        "signer_infos": [signer_info],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())
