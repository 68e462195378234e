"""CRLs (RFC 5280 §5) and OCSP responses (RFC 6960) signed by an issuing CA's own key.

The gateway owns revocation state; these functions only turn it into signed DER.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from ca_backends.base import RevokedEntry
from ca_backends.internal.certs import SigningIssuer
from ca_backends.internal.keys import signature_hash
from gateway.model import RevocationReason

StatusOf = Callable[[str], tuple[str, RevokedEntry | None]]

_REASON_FLAGS = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.REMOVE_FROM_CRL: x509.ReasonFlags.remove_from_crl,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}
_STATUSES = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}
_MAX_NONCE = 32  # RFC 8954 §2.1


def reason_flag(reason: RevocationReason) -> x509.ReasonFlags | None:
    """The CRLReason to encode; None for unspecified, which SHOULD be absent (§5.3.1)."""
    if reason is RevocationReason.UNSPECIFIED:
        return None
    return _REASON_FLAGS[reason]


def sign_crl(
    issuer: SigningIssuer,
    revoked: Sequence[RevokedEntry],
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> bytes:
    """A complete CRL (DER) with the CRL number and AKI extensions (RFC 5280 §5.2.1, §5.2.3).

    Each entry carries a reasonCode (§5.3.1) unless the reason is unspecified.  Entries
    with reason removeFromCRL are left out: that reason belongs in delta CRLs only, and a
    complete CRL expresses it by not listing the serial.
    """
    if next_update <= this_update:
        raise ValueError("next_update must be later than this_update")
    if number < 0:
        raise ValueError("the CRL number must not be negative")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.certificate.extensions.get_extension_for_class(
                    x509.SubjectKeyIdentifier
                ).value
            ),
            critical=False,
        )
    )
    for entry in revoked:
        if entry.reason is RevocationReason.REMOVE_FROM_CRL:
            continue
        revoked_builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(entry.serial, 16))
            .revocation_date(entry.revoked_at)
        )
        flag = reason_flag(entry.reason)
        if flag is not None:
            revoked_builder = revoked_builder.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(revoked_builder.build())
    crl = builder.sign(issuer.private_key, signature_hash(issuer.private_key))
    return crl.public_bytes(serialization.Encoding.DER)


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An OCSPResponse with only a responseStatus (RFC 6960 §4.2.1)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def parse_request(request_der: bytes) -> ocsp.OCSPRequest | None:
    """The request, or None when it cannot be parsed (one CertID is all cryptography reads)."""
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        # Touch the lazily parsed parts so a bad CertID or extension fails here.
        _ = (request.serial_number, request.issuer_name_hash, request.issuer_key_hash)
        _ = request.extensions
    except ValueError:
        return None
    return request


def names_issuer(request: ocsp.OCSPRequest, issuer: SigningIssuer) -> bool:
    """Whether the request's CertID names ``issuer``; False for unsupported hashes."""
    try:
        algorithm = request.hash_algorithm
    except UnsupportedAlgorithm:
        return False
    return issuer.matches_cert_id(algorithm, request.issuer_name_hash, request.issuer_key_hash)


def sign_ocsp(
    issuer: SigningIssuer,
    request_der: bytes,
    status_of: StatusOf,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> bytes:
    """Answer one OCSP request with a response the issuing CA signs itself (RFC 6960 §4.2.2.2).

    malformedRequest when the request does not parse, unauthorized when its CertID names
    another issuer (§2.3); otherwise a BasicOCSPResponse with responderID byKey, the
    CertID echoed with its own hash algorithm, and the nonce echoed (RFC 8954) when it
    is 1 to 32 octets.
    """
    request = parse_request(request_der)
    if request is None:
        return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if not names_issuer(request, issuer):
        return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    serial = format(request.serial_number, "x")
    status_name, entry = status_of(serial)
    status = _STATUSES.get(status_name)
    if status is None:
        raise ValueError(f"status_of answered {status_name!r}, not good/revoked/unknown")
    revocation_time: dt.datetime | None = None
    revocation_reason: x509.ReasonFlags | None = None
    if status is ocsp.OCSPCertStatus.REVOKED:
        if entry is None:
            raise ValueError("status_of answered 'revoked' without a RevokedEntry")
        revocation_time = entry.revoked_at
        revocation_reason = reason_flag(entry.reason)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=revocation_time,
            revocation_reason=revocation_reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
    )
    nonce = _nonce(request)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(issuer.private_key, signature_hash(issuer.private_key))
    return response.public_bytes(serialization.Encoding.DER)


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None
    return nonce if 0 < len(nonce) <= _MAX_NONCE else None
