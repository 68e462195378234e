"""Repository functions for the certificate inventory and revocations."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from gateway.model import IssuedCertificate, RevocationReason
from gateway.store.tables import CertificateRow, RevocationRow, certificates_table


class CertificateStatus:
    VALID = "valid"
    REVOKED = "revoked"


def _common_name(cert: x509.Certificate) -> str:
    try:
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return ""
    return str(names[0].value) if names else ""


def add(session: Session | Connection, issued: IssuedCertificate, *, profile: str, protocol: str,
        request_id: str | None, principal_id: str, replaces_serial: str | None,
        issuer_id: str | None, now: dt.datetime) -> None:
    """Record an issued certificate; link it to the one it replaces (renewal)."""
    cert = issued.certificate
    session.execute(insert(certificates_table), [dict(
        serial=issued.serial,
        issuer=issued.issuer,
        issuer_id=issuer_id,
        subject=issued.subject,
        common_name=_common_name(cert)[:255],
        sans=[str(i) for i in issued.sans],
        san_text="|" + "|".join(str(i) for i in issued.sans) + "|",
        profile=profile,
        protocol=protocol,
        backend=issued.backend,
        backend_ref=issued.backend_ref,
        request_id=request_id,
        principal_id=principal_id,
        not_before=issued.not_before,
        not_after=issued.not_after,
        fingerprint_sha256=hashlib.sha256(issued.der).hexdigest(),
        der=issued.der,
        chain_der=b"".join(issued.chain),
        status=CertificateStatus.VALID,
        replaces_serial=replaces_serial,
        created_at=now,
    )])
    if replaces_serial:
        session.execute(update(CertificateRow).where(CertificateRow.serial == replaces_serial)
                        .values(replaced_by_serial=issued.serial))


def get(session: Session, serial: str) -> CertificateRow | None:
    return session.get(CertificateRow, normalize_serial(serial))


def normalize_serial(serial: str) -> str:
    """Accept 'AB:CD', '0xabcd', 'abcd' and return canonical lower-case hex."""
    text = serial.strip().lower().replace(":", "").removeprefix("0x")
    try:
        return format(int(text, 16), "x")
    except ValueError:
        return text


def chain_of(row: CertificateRow) -> list[bytes]:
    """Split the stored concatenated DER chain back into certificates."""
    out: list[bytes] = []
    data = row.chain_der
    while data:
        # DER SEQUENCE: 0x30, then a short or long-form length.
        length = data[1]
        if length < 0x80:
            total = 2 + length
        else:
            count = length & 0x7F
            total = 2 + count + int.from_bytes(data[2:2 + count], "big")
        out.append(data[:total])
        data = data[total:]
    return out


def mark_revoked(session: Session, row: CertificateRow, *, reason: RevocationReason,
                 requested_by: str, state: str, detail: str, now: dt.datetime) -> RevocationRow:
    if state == "done":
        row.status = CertificateStatus.REVOKED
        row.revoked_at = now
        row.revocation_reason = reason.value
    revocation = RevocationRow(serial=row.serial, reason=reason.value, requested_by=requested_by,
                               state=state, detail=detail, created_at=now)
    session.add(revocation)
    session.flush()
    return revocation


def revoked_for(session: Session, *, backend: str, issuer_id: str | None) -> list[CertificateRow]:
    query = select(CertificateRow).where(
        CertificateRow.backend == backend,
        CertificateRow.status == CertificateStatus.REVOKED,
    )
    if issuer_id is not None:
        query = query.where(CertificateRow.issuer_id == issuer_id)
    return list(session.scalars(query.order_by(CertificateRow.revoked_at)))


@dataclass(frozen=True, slots=True)
class CertificateFilter:
    serial: str | None = None
    subject: str | None = None  # substring of the subject DN
    san: str | None = None  # substring of any SAN value
    profile: str | None = None
    backend: str | None = None
    status: str | None = None
    expiring_before: dt.datetime | None = None
    limit: int = 100
    offset: int = 0


def search(session: Session, where: CertificateFilter) -> list[CertificateRow]:
    query = select(CertificateRow).order_by(CertificateRow.created_at.desc())
    if where.serial:
        query = query.where(CertificateRow.serial == normalize_serial(where.serial))
    if where.subject:
        query = query.where(CertificateRow.subject.contains(where.subject, autoescape=True))
    if where.san:
        query = query.where(CertificateRow.san_text.contains(where.san.lower(), autoescape=True))
    if where.profile:
        query = query.where(CertificateRow.profile == where.profile)
    if where.backend:
        query = query.where(CertificateRow.backend == where.backend)
    if where.status:
        query = query.where(CertificateRow.status == where.status)
    if where.expiring_before:
        query = query.where(CertificateRow.not_after < where.expiring_before)
    return list(session.scalars(query.limit(where.limit).offset(where.offset)))
