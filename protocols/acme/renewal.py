"""ACME Renewal Information (RFC 9773): renewalInfo and the newOrder ``replaces`` field.

A CertID is base64url(AKI keyIdentifier) "." base64url(serial DER content octets)
(RFC 9773 §4.1).  The suggested window starts when two thirds of the validity have
passed and ends at five sixths, like Let's Encrypt's; a revoked certificate gets a window
in the past, which tells clients to renew now.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509

from gateway.services.acme import AcmeState
from gateway.services.acme_model import AcmeCertificate
from protocols.acme.jws import b64decode, b64encode
from protocols.acme.problems import AcmeProblem, ProblemType, malformed, not_found, unauthorized
from protocols.acme.resources import timestamp

RETRY_AFTER = 6 * 3600


def cert_id(cert: x509.Certificate) -> str:
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = cert.serial_number
    raw = serial.to_bytes((serial.bit_length() + 8) // 8, "big")  # DER INTEGER content
    return f"{b64encode(aki.key_identifier or b'')}.{b64encode(raw)}"


def lookup(state: AcmeState, value: Any) -> AcmeCertificate:
    """The inventory certificate a CertID (RFC 9773 §4.1) names; 404 if none."""
    if not isinstance(value, str) or value.count(".") != 1:
        raise malformed("a CertID is base64url(AKI).base64url(serial)")
    aki_part, serial_part = value.split(".")
    aki = b64decode(aki_part, "CertID key identifier")
    serial_bytes = b64decode(serial_part, "CertID serial")
    if not serial_bytes or not aki:
        raise malformed("the CertID has an empty part")
    serial = format(int.from_bytes(serial_bytes, "big"), "x")
    row = state.certificate(serial)
    if row is None:
        raise not_found("certificate")
    cert = x509.load_der_x509_certificate(row.der)
    try:
        found = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise not_found("certificate") from None
    if found.key_identifier != aki:
        raise not_found("certificate")
    return row


def replaced_serial(state: AcmeState, value: Any, account_id: str,
                    profile: str) -> str | None:
    """Validate newOrder ``replaces`` (RFC 9773 §5): a certificate of this account,
    issued under the order's profile (a renewal never crosses profiles).

    Returns its serial (what the pipeline records as ``renewal_of``)."""
    if value is None:
        return None
    try:
        row = lookup(state, value)
    except AcmeProblem as exc:
        if exc.status == 404:
            raise malformed("'replaces' names no certificate this CA issued") from None
        raise
    if row.principal_id != account_id:
        raise unauthorized("'replaces' names a certificate of another account")
    if row.profile != profile:
        raise malformed(f"'replaces' names a certificate not issued under profile {profile!r}")
    if row.replaced_by_serial:
        raise AcmeProblem(ProblemType.ALREADY_REPLACED,
                          "the certificate named in 'replaces' was already replaced", 409)
    return row.serial


def renewal_info(state: AcmeState, value: str, now: dt.datetime) -> dict[str, Any]:
    row = lookup(state, value)
    lifetime = row.not_after - row.not_before
    if row.revoked:
        start, end = now - dt.timedelta(days=1), now - dt.timedelta(hours=1)
    else:
        start = row.not_before + lifetime * 2 / 3
        end = row.not_before + lifetime * 5 / 6
    return {"suggestedWindow": {"start": timestamp(start), "end": timestamp(end)}}
