"""Stored requests as the pipeline and operators see them: rebuilding, viewing, answering."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from sqlalchemy.orm import Session

from gateway import codec
from gateway.errors import ErrorKind, GatewayError
from gateway.model import (
    EnrollmentRequest,
    EnrollmentResult,
    IssuedCertificate,
    Operation,
    Principal,
    PrincipalKind,
)
from gateway.model import Protocol as Proto
from gateway.model import RequestState as S
from gateway.policy import RenewalContext
from gateway.store import certificates
from gateway.store.certificates import CertificateStatus
from gateway.store.tables import RequestRow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request as operators see it (CLI, admin API)."""

    id: str
    protocol: str
    operation: str
    profile: str
    principal: str
    subject: str
    state: S
    reason: str
    backend: str | None
    certificate_serial: str | None
    attempts: int
    created_at: dt.datetime
    updated_at: dt.datetime


def view(row: RequestRow) -> RequestView:
    return RequestView(row.id, row.protocol, row.operation, row.profile,
                       f"{row.principal_kind}:{row.principal_id}", row.subject, S(row.state),
                       row.reason, row.backend, row.certificate_serial, row.attempts,
                       row.created_at, row.updated_at)


@dataclass(frozen=True, slots=True)
class Known:
    profile: str
    protocol: str
    principal_id: str
    principal_kind: str
    renewal_of: str | None
    backend_ref: str | None


def must(value: T | None) -> T:
    if value is None:
        raise GatewayError(ErrorKind.INTERNAL, "inconsistent request record")
    return value


def actor(row: RequestRow) -> str:
    return f"{row.principal_kind}:{row.principal_id}"


def request_of(row: RequestRow) -> EnrollmentRequest:
    """Rebuild the protocol-neutral request from its stored form."""
    return EnrollmentRequest(
        protocol=Proto(row.protocol),
        operation=Operation(row.operation),
        profile=row.profile,
        csr=x509.load_der_x509_csr(row.csr_der),
        csr_der=row.csr_der,
        principal=Principal(PrincipalKind(row.principal_kind), row.principal_id,
                            dict(row.principal_attributes or {})),
        proven_identifiers=tuple(codec.identifier_from_text(i) for i in row.proven_identifiers),
        renewal_of=row.renewal_of,
        requested_not_before=row.requested_not_before,
        requested_not_after=row.requested_not_after,
        transaction_id=row.transaction_id,
        csr_verified_at_receipt=row.csr_verified_at_receipt,
    )



def renewal_context(session: Session, request: EnrollmentRequest) -> RenewalContext | None:
    """The certificate a renew/rekey replaces, as the inventory knows it."""
    if request.operation not in (Operation.RENEW, Operation.REKEY):
        return None
    if not request.renewal_of:
        return RenewalContext(None, False)
    row = certificates.get(session, request.renewal_of)
    if row is None:
        return RenewalContext(None, False)
    return RenewalContext(x509.load_der_x509_certificate(row.der),
                          row.status == CertificateStatus.REVOKED, row.profile)


def result_of(session: Session, row: RequestRow, now: dt.datetime) -> EnrollmentResult:
    """The request's outcome as a client sees it; raises for denied and failed requests."""
    state = S(row.state)
    if state is S.ISSUED:
        cert_row = must(certificates.get(session, must(row.certificate_serial)))
        issued = IssuedCertificate(
            serial=cert_row.serial, issuer=cert_row.issuer, subject=cert_row.subject,
            sans=tuple(codec.identifier_from_text(s) for s in cert_row.sans),
            not_before=cert_row.not_before, not_after=cert_row.not_after, der=cert_row.der,
            chain=tuple(certificates.chain_of(cert_row)), backend=cert_row.backend,
            backend_ref=cert_row.backend_ref)
        return EnrollmentResult(row.id, state, certificate=issued)
    if state is S.DENIED:
        raise GatewayError(codec.denial_kind_of(row.decision), row.reason)
    if state is S.FAILED:
        raise GatewayError(ErrorKind.BACKEND_REJECTED, row.reason)
    retry_after = None
    if row.next_attempt_at is not None:
        retry_after = max(1, int((row.next_attempt_at - now).total_seconds()))
    if state is S.HELD:
        retry_after = 60
    return EnrollmentResult(row.id, state, reason=row.reason,
                            retry_after=retry_after or 1,
                            retrying=state is S.SUBMITTED and row.attempts > 0)
