"""``/admin/api/profiles``, ``backends`` and ``audit``: what is configured, how it is, what
happened."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from gateway.admin import queries, schemas
from gateway.admin.errors import AdminError, DateTimeParam, responses
from gateway.admin.security import AsAuditor, AuditedRoute, gateway_of
from gateway.config import ProfileConfig
from gateway.errors import ErrorKind

router = APIRouter(route_class=AuditedRoute)

_TEXT = r"^[^\x00-\x1f\x7f]*$"


def _profile_out(name: str, profile: ProfileConfig) -> schemas.ProfileOut:
    return schemas.ProfileOut(name=name, backend=profile.backend,
                              fallback_backend=profile.fallback_backend,
                              approval=profile.approval,
                              auth_methods=[str(m) for m in profile.auth_methods],
                              settings=profile.model_dump(mode="json"))


@router.get("/profiles", response_model=list[schemas.ProfileOut], tags=["profiles"],
            responses=responses())
async def list_profiles(request: Request, _who: AsAuditor) -> list[schemas.ProfileOut]:
    """Every configured profile (read only: profiles live in gatehouse.yaml)."""
    config = gateway_of(request).config
    return [_profile_out(name, profile) for name, profile in config.profiles.items()]


@router.get("/profiles/{name}", response_model=schemas.ProfileOut, tags=["profiles"],
            responses=responses(404))
async def get_profile(request: Request, _who: AsAuditor,
                      name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]) -> schemas.ProfileOut:
    profile = gateway_of(request).config.profiles.get(name)
    if profile is None:
        raise AdminError.kind(ErrorKind.UNKNOWN_PROFILE, f"unknown profile {name!r}")
    return _profile_out(name, profile)


@router.get("/backends", response_model=list[schemas.BackendHealth], tags=["backends"],
            responses=responses())
async def backends_health(request: Request, _who: AsAuditor
                          ) -> list[schemas.BackendHealth]:
    """Each CA backend's health, asked now."""
    gateway = gateway_of(request)
    health = await gateway.backends.health()
    return [schemas.BackendHealth(name=name, type=str(gateway.config.backends[name].type),
                                  ok=item.ok, detail=item.detail)
            for name, item in health.items()]


@router.get("/audit", response_model=schemas.AuditList, tags=["audit"], responses=responses())
async def audit_events(
    request: Request, _who: AsAuditor,
    actor: Annotated[str | None, Query(max_length=255, pattern=_TEXT)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=_TEXT,
                                        description="exact, or a prefix ending in '.'")] = None,
    outcome: Annotated[str | None, Query(max_length=16, pattern=_TEXT)] = None,
    request_id: Annotated[str | None, Query(max_length=36, pattern=_TEXT)] = None,
    serial: Annotated[str | None, Query(max_length=64, pattern=_TEXT)] = None,
    profile: Annotated[str | None, Query(max_length=64, pattern=_TEXT)] = None,
    since: DateTimeParam | None = None,
    until: DateTimeParam | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> schemas.AuditList:
    """Audit events, newest first: issuance, denials, approvals, revocations, admin calls."""
    where = queries.AuditFilter(actor=actor or None, action=action or None,
                                outcome=outcome or None, request_id=request_id or None,
                                serial=serial or None, profile=profile or None,
                                since=_aware(since), until=_aware(until), limit=limit,
                                offset=offset)
    with gateway_of(request).db.session() as session:
        items = [schemas.AuditEventOut(id=row.id, at=row.at, actor=row.actor, action=row.action,
                                       outcome=row.outcome, request_id=row.request_id,
                                       serial=row.serial, profile=row.profile, reason=row.reason,
                                       details=dict(row.details or {}))
                 for row in queries.audit_events(session, where)]
    return schemas.AuditList(items=items, count=len(items))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value
