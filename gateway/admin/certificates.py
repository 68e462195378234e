"""``/admin/api/certificates``: search the inventory, show, revoke, enroll a pasted CSR."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from gateway.admin import schemas
from gateway.admin.errors import AdminError, DateTimeParam, responses
from gateway.admin.security import AsAdmin, AsAuditor, AuditedRoute, actor_of, gateway_of
from gateway.errors import ErrorKind
from gateway.model import EnrollmentRequest, Operation, Principal, PrincipalKind, Protocol
from gateway.model import RequestState as S
from gateway.pem import load_csr
from gateway.store import certificates

router = APIRouter(prefix="/certificates", tags=["certificates"], route_class=AuditedRoute)

_TEXT = r"^[^\x00-\x1f\x7f]*$"
SerialPath = Annotated[str, Path(max_length=200, description="hex, with or without colons")]
_SERIAL = re.compile(r"^(0x)?[0-9A-Fa-f:]{1,100}$")


def _known_serial(serial: str) -> str:
    """The serial, or 404 for text that cannot be one (never reaches the database)."""
    if not _SERIAL.fullmatch(serial):
        raise AdminError.kind(ErrorKind.NOT_FOUND, "no certificate with that serial")
    return serial



@router.get("", response_model=schemas.CertificateList, responses=responses())
async def search_certificates(
    request: Request, _who: AsAuditor,
    serial: Annotated[str | None, Query(max_length=100, pattern=r"^[0-9A-Fa-fx:]*$")] = None,
    subject: Annotated[str | None, Query(max_length=255, pattern=_TEXT,
                                         description="substring of the subject DN")] = None,
    san: Annotated[str | None, Query(max_length=255, pattern=_TEXT,
                                     description="substring of any SAN, e.g. dns:host")] = None,
    profile: Annotated[str | None, Query(max_length=64, pattern=_TEXT)] = None,
    backend: Annotated[str | None, Query(max_length=64, pattern=_TEXT)] = None,
    status: Annotated[str | None, Query(pattern=r"^(valid|revoked)$")] = None,
    expiring_before: DateTimeParam | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> schemas.CertificateList:
    """Search certificates by serial, subject, SAN, profile, backend, status, expiry."""
    if expiring_before is not None and expiring_before.tzinfo is None:
        expiring_before = expiring_before.replace(tzinfo=dt.UTC)
    where = certificates.CertificateFilter(
        serial=serial or None, subject=subject or None, san=san or None, profile=profile or None,
        backend=backend or None, status=status, expiring_before=expiring_before, limit=limit,
        offset=offset)
    with gateway_of(request).db.session() as session:
        items = [schemas.summary(row) for row in certificates.search(session, where)]
    return schemas.CertificateList(items=items, count=len(items))


@router.get("/{serial}", response_model=schemas.CertificateDetail, responses=responses(404))
async def get_certificate(request: Request, _who: AsAuditor, serial: SerialPath) -> schemas.CertificateDetail:
    """One certificate with its PEM and chain."""
    with gateway_of(request).db.session() as session:
        row = certificates.get(session, _known_serial(serial))
        if row is None:
            raise AdminError.kind(ErrorKind.NOT_FOUND, f"no certificate with serial {serial}")
        return schemas.detail(row)


@router.post("/{serial}/revoke", response_model=schemas.RevokeOut,
             responses=responses(404, 409, 503))
async def revoke_certificate(request: Request, who: AsAdmin, serial: SerialPath, body: schemas.RevokeIn
                            ) -> schemas.RevokeOut:
    """Revoke with an RFC 5280 §5.3.1 reason; the CRL is re-signed on its next fetch."""
    state = await gateway_of(request).revocation.revoke(_known_serial(serial), body.reason, by=actor_of(who))
    return schemas.RevokeOut(serial=certificates.normalize_serial(serial), state=state)


@router.post("", response_model=schemas.EnrollmentOut, status_code=201,
             responses={**responses(400, 404, 413, 429, 503),
                        202: {"model": schemas.EnrollmentOut,
                              "description": "Held for approval or waiting for the CA"}})
async def enroll(request: Request, who: AsAdmin, response: Response, body: schemas.EnrollIn
                ) -> schemas.EnrollmentOut:
    """Enroll a pasted CSR through the pipeline (protocol ``manual``); 201 when issued,
    202 when held for approval or pending at the CA."""
    csr, der = load_csr(body.csr.encode())
    enrollment = EnrollmentRequest(
        protocol=Protocol.MANUAL, operation=Operation.ENROLL, profile=body.profile, csr=csr,
        csr_der=der, principal=Principal(PrincipalKind.ADMIN, actor_of(who), {"role": who.role}),
        transaction_id=body.transaction_id)
    result = await gateway_of(request).enrollment.submit(enrollment)
    if result.state is not S.ISSUED:
        response.status_code = 202
        if result.retry_after:
            response.headers["Retry-After"] = str(result.retry_after)
    return schemas.enrollment_out(result)
