"""``/admin/api/requests``: list enrollment requests, approve or deny held ones."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from gateway.admin import schemas
from gateway.admin.errors import AdminError, responses
from gateway.admin.security import AsAuditor, AsOperator, AuditedRoute, actor_of, gateway_of
from gateway.errors import ErrorKind
from gateway.model import RequestState
from gateway.request_records import RequestView, view
from gateway.store import requests
from gateway.store.requests import RequestFilter

router = APIRouter(prefix="/requests", tags=["requests"], route_class=AuditedRoute)

RequestId = Annotated[str, Path(max_length=100, description="request id (UUID)")]
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _known_id(request_id: str) -> str:
    """The id, or 404 for text that cannot be one (never reaches the database)."""
    if not _UUID.fullmatch(request_id):
        raise AdminError.kind(ErrorKind.NOT_FOUND, "no such request")
    return request_id



@router.get("", response_model=schemas.RequestList, responses=responses())
async def list_requests(
    request: Request, _who: AsAuditor,
    state: RequestState | None = None,
    profile: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]*$")] = None,
    protocol: Annotated[str | None, Query(pattern=r"^(est|scep|acme|manual)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> schemas.RequestList:
    """Requests, newest first; ``state=held`` is the approval queue."""
    views = gateway_of(request).enrollment.list_requests(
        RequestFilter(state=state, profile=profile or None, protocol=protocol, limit=limit,
                      offset=offset))
    items = list(views)
    return schemas.RequestList(items=items, count=len(items))


@router.get("/{request_id}", response_model=RequestView, responses=responses(404))
async def get_request(request: Request, _who: AsAuditor, request_id: RequestId) -> RequestView:
    with gateway_of(request).db.session() as session:
        row = requests.get(session, _known_id(request_id))
        if row is None:
            raise AdminError.kind(ErrorKind.NOT_FOUND, "no such request")
        return view(row)


@router.post("/{request_id}/approve", response_model=schemas.EnrollmentOut,
             responses=responses(404, 409, 503))
async def approve_request(request: Request, who: AsOperator, request_id: RequestId) -> schemas.EnrollmentOut:
    """Approve a held request; it is issued now (or retried if the CA is down)."""
    result = await gateway_of(request).enrollment.approve(_known_id(request_id), by=actor_of(who))
    return schemas.enrollment_out(result)


@router.post("/{request_id}/deny", response_model=RequestView,
             responses=responses(404, 409))
async def deny_request(request: Request, who: AsOperator, request_id: RequestId, body: schemas.DenyIn
                      ) -> RequestView:
    """Deny a request that is not final yet; the client sees the reason."""
    gateway = gateway_of(request)
    gateway.enrollment.deny(_known_id(request_id), by=actor_of(who), reason=body.reason)
    with gateway.db.session() as session:
        row = requests.get(session, _known_id(request_id))
        if row is None:
            raise AdminError.kind(ErrorKind.NOT_FOUND, "no such request")
        return view(row)
