"""CertRep building (RFC 8894 §3.3.2) and the RA-signed replies of §4.

A CertRep is a SignedData by the RA whose signed attributes carry the request's
transactionID, messageType 3, pkiStatus, failInfo (FAILURE only), a fresh senderNonce and
the request's senderNonce as recipientNonce.  SUCCESS carries an EnvelopedData, encrypted
to the certificate that signed the request, of a degenerate SignedData holding the issued
certificate (or the CRL, for GetCRL).  PENDING and FAILURE have no messageData; their
eContent is present but empty, because certmonger (OpenSSL PKCS7_verify) cannot verify a
SignedData whose content is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gateway.ra import RaIdentity
from protocols import cms as cmslib
from protocols.scep.message import Header
from protocols.scep.vocabulary import (
    OID_FAIL_INFO,
    OID_FAIL_INFO_TEXT,
    OID_MESSAGE_TYPE,
    OID_PKI_STATUS,
    OID_RECIPIENT_NONCE,
    OID_SENDER_NONCE,
    OID_TRANSACTION_ID,
    FailInfo,
    MessageType,
    PkiStatus,
)

MAX_FAIL_TEXT = 200


@dataclass(frozen=True, slots=True)
class ReplyAlgorithms:
    digest: str = "sha256"
    cipher: str = "aes256_cbc"


def success(header: Header, ra: RaIdentity, algorithms: ReplyAlgorithms, *, recipient_der: bytes,
            certificates_der: tuple[bytes, ...] = (), crl_der: bytes | None = None) -> bytes:
    inner = cmslib.certs_only(certificates_der, (crl_der,) if crl_der else ())
    enveloped = cmslib.envelope(inner, [recipient_der], cipher=algorithms.cipher)
    return _cert_rep(header, ra, algorithms, PkiStatus.SUCCESS, content=enveloped)


def pending(header: Header, ra: RaIdentity, algorithms: ReplyAlgorithms) -> bytes:
    return _cert_rep(header, ra, algorithms, PkiStatus.PENDING, content=b"")


def failure(header: Header, ra: RaIdentity, algorithms: ReplyAlgorithms, fail_info: FailInfo,
            text: str) -> bytes:
    return _cert_rep(header, ra, algorithms, PkiStatus.FAILURE, content=b"",
                     fail_info=fail_info, text=text)


def next_ca(ra: RaIdentity, certificates_der: tuple[bytes, ...]) -> bytes:
    """GetNextCACert (RFC 8894 §4.7.1): the degenerate chain, signed by the current RA."""
    return cmslib.sign(cmslib.certs_only(certificates_der), signer_der=ra.der,
                       signer_key=ra.key, digest="sha256", attributes=(),
                       certificates_der=ra.extra_der)


def _cert_rep(header: Header, ra: RaIdentity, algorithms: ReplyAlgorithms, status: PkiStatus,
              *, content: bytes | None = None, fail_info: FailInfo | None = None,
              text: str | None = None) -> bytes:
    attributes = [
        cmslib.attribute(OID_TRANSACTION_ID, cmslib.der_printable(header.transaction_id)),
        cmslib.attribute(OID_MESSAGE_TYPE, cmslib.der_printable(MessageType.CERT_REP.value)),
        cmslib.attribute(OID_PKI_STATUS, cmslib.der_printable(status.value)),
        cmslib.attribute(OID_SENDER_NONCE, cmslib.der_octets(os.urandom(16))),
        cmslib.attribute(OID_RECIPIENT_NONCE, cmslib.der_octets(header.sender_nonce)),
    ]
    if fail_info is not None:
        attributes.append(cmslib.attribute(OID_FAIL_INFO, cmslib.der_printable(fail_info.value)))
    if text:
        attributes.append(cmslib.attribute(OID_FAIL_INFO_TEXT,
                                           cmslib.der_utf8(text[:MAX_FAIL_TEXT])))
    return cmslib.sign(content, signer_der=ra.der, signer_key=ra.key, digest=algorithms.digest,
                       attributes=attributes, certificates_der=ra.extra_der)

