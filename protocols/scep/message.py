"""pkiMessage decoding (RFC 8894 §3.2): CMS SignedData over an EnvelopedData.

Decoding is staged so that every failure is answered as well as it can be:
``read_header`` needs only the SignedData and its signed attributes (transactionID,
messageType, senderNonce); without them the caller answers HTTP 400.  Everything after
(signature, envelope, inner content) raises ``ScepFailure`` with the failInfo a CertRep
FAILURE carries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from protocols import cms as cmslib
from protocols.scep.errors import ScepFailure, Unreadable
from protocols.scep.vocabulary import (
    OID_MESSAGE_TYPE,
    OID_SENDER_NONCE,
    OID_SIGNING_TIME,
    OID_TRANSACTION_ID,
    FailInfo,
    MessageType,
)

_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)
MAX_TRANSACTION_ID = 256


class IssuerAndSubject(core.Sequence):  # type: ignore[misc]
    """RFC 8894 §3.3.3: the messageData of CertPoll."""

    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


@dataclass(frozen=True, slots=True)
class Header:
    """What a CertRep answer needs from the request, readable before any verification."""

    message_type: MessageType
    transaction_id: str
    sender_nonce: bytes


@dataclass(frozen=True, slots=True)
class PkiMessage:
    """A pkiMessage whose signature verified."""

    header: Header
    signer: x509.Certificate
    signer_der: bytes
    digest: str
    signing_time: dt.datetime | None
    envelope_der: bytes  # the pkcsPKIEnvelope (ContentInfo of EnvelopedData)


def read_header(der: bytes) -> tuple[Header, cms.SignedData]:
    """The SignedData and its SCEP attributes; Unreadable when they cannot be had."""
    try:
        info = cmslib.load_content_info(der, "signed_data")
        signed = info["content"]
        infos = signed["signer_infos"]
        if len(infos) != 1:
            raise Unreadable(f"a pkiMessage has one SignerInfo, not {len(infos)}")
        attributes = cmslib.signed_attributes(infos[0])
        transaction_id = _text(attributes, OID_TRANSACTION_ID)
        message_type = _text(attributes, OID_MESSAGE_TYPE)
        nonce_values = attributes.get(OID_SENDER_NONCE, [])
        nonce = _octets(nonce_values[0]) if len(nonce_values) == 1 else b""
    except cmslib.CmsError as exc:
        raise Unreadable(exc.detail) from exc
    except _PARSE_ERRORS as exc:
        raise Unreadable("the pkiMessage is not valid DER") from exc
    if not transaction_id or len(transaction_id) > MAX_TRANSACTION_ID:
        raise Unreadable("the pkiMessage has no usable transactionID attribute")
    if not 8 <= len(nonce) <= 64:
        raise Unreadable("the pkiMessage has no usable senderNonce attribute")
    try:
        kind = MessageType(message_type or "")
    except ValueError:
        raise Unreadable(f"unknown messageType {message_type!r}") from None
    return Header(kind, transaction_id, nonce), signed


def verify(header: Header, signed: cms.SignedData, *, allowed_digests: frozenset[str]
           ) -> PkiMessage:
    """Check the signature (RFC 8894 §3.2.2); ScepFailure badAlg / badMessageCheck."""
    with _cms_failures("the signature cannot be checked"):
        verified = cmslib.verify_signed_data(signed, allowed_digests=allowed_digests)
        signer = verified.signers[0]
        signing_time = _time(signer.attributes.get(OID_SIGNING_TIME, []))
    if signer.certificate is None or signer.certificate_der is None:  # no candidate keys
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, "the signer's certificate is missing")
    return PkiMessage(header, signer.certificate, signer.certificate_der, signer.digest,
                      signing_time, verified.content)


def open_envelope(message: PkiMessage, *, ra_der: bytes, ra_key: rsa.RSAPrivateKey,
                  allowed_ciphers: frozenset[str]) -> cmslib.Opened:
    """Decrypt the pkcsPKIEnvelope addressed to our RA (RFC 8894 §3.2.2)."""
    with _cms_failures("the envelope cannot be read"):
        info = cmslib.load_content_info(message.envelope_der, "enveloped_data")
        return cmslib.open_envelope(info["content"], certificate_der=ra_der, key=ra_key,
                                    allowed_ciphers=allowed_ciphers)


@contextmanager
def _cms_failures(unreadable: str) -> Iterator[None]:
    """The one mapping of CMS failures to SCEP failInfo: badAlg for an algorithm we do not
    (or may not) use, badMessageCheck for the rest (RFC 8894 §3.3.2.2)."""
    try:
        yield
    except cmslib.CmsUnsupportedAlgorithm as exc:
        raise ScepFailure(FailInfo.BAD_ALG, exc.detail) from exc
    except cmslib.CmsError as exc:
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, exc.detail) from exc
    except _PARSE_ERRORS as exc:
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, unreadable) from exc


def issuer_and_subject(content: bytes) -> IssuerAndSubject:
    try:
        value: IssuerAndSubject = IssuerAndSubject.load(content, strict=True)
        _ = value["issuer"].native, value["subject"].native
    except _PARSE_ERRORS as exc:
        raise ScepFailure(FailInfo.BAD_REQUEST, "CertPoll needs an IssuerAndSubject") from exc
    return value


def issuer_and_serial(content: bytes) -> cms.IssuerAndSerialNumber:
    try:
        value: cms.IssuerAndSerialNumber = cms.IssuerAndSerialNumber.load(content, strict=True)
        _ = value["issuer"].native, value["serial_number"].native
    except _PARSE_ERRORS as exc:
        raise ScepFailure(FailInfo.BAD_REQUEST, "the request needs an IssuerAndSerialNumber"
                          ) from exc
    return value


def _text(attributes: dict[str, list[core.Asn1Value]], oid: str) -> str | None:
    values = attributes.get(oid, [])
    if len(values) != 1:
        return None
    value = values[0]
    parsed = value.parsed if isinstance(value, core.Any) else value
    if isinstance(parsed, core.AbstractString):
        return str(parsed.native)
    return None


def _octets(value: core.Asn1Value) -> bytes:
    parsed = value.parsed if isinstance(value, core.Any) else value
    if isinstance(parsed, core.OctetString):
        return bytes(parsed.native)
    return b""


def _time(values: list[core.Asn1Value]) -> dt.datetime | None:
    if len(values) != 1:
        return None
    value = values[0]
    if isinstance(value, cms.Time):
        value = value.chosen
    native = value.native
    return native if isinstance(native, dt.datetime) else None
