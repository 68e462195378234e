"""``/admin/api/challenges``, ``eab-keys`` and ``users``: the secrets clients enroll with.

Secrets are returned once, at creation; the database keeps only hashes (challenges:
gateway.auth.challenges; EAB keys sealed under the KEK: gateway.auth.eab; EST passwords:
scrypt, as ``gatehouse user add``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from gateway.admin import queries, schemas
from gateway.admin.errors import AdminError, responses
from gateway.admin.security import AsAdmin, AsAuditor, AsOperator, AuditedRoute, gateway_of
from gateway.auth import challenges, eab
from gateway.auth.secrets import hash_secret
from gateway.auth.users import PASSWORD_KIND
from gateway.config import ProfileConfig
from gateway.errors import ErrorKind
from gateway.runtime import Gateway
from gateway.store import credentials
from gateway.store.tables import CredentialRow

router = APIRouter(tags=["credentials"], route_class=AuditedRoute)

ProfileQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]*$")]
NamePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]


def _profile(gateway: Gateway, name: str) -> ProfileConfig:
    profile = gateway.policy.profile(name)
    if profile is None:
        raise AdminError.kind(ErrorKind.UNKNOWN_PROFILE, f"unknown profile {name!r}")
    return profile


# -- SCEP challenges ----------------------------------------------------------------------


@router.post("/challenges", response_model=schemas.ChallengeOut, status_code=201,
             tags=["challenges"], responses=responses(400, 404))
async def create_challenge(request: Request, _who: AsOperator, body: schemas.ChallengeIn
                          ) -> schemas.ChallengeOut:
    """A one-time SCEP challenge password (RFC 8894 §2.3) for a profile; shown once."""
    gateway = gateway_of(request)
    profile = _profile(gateway, body.profile)
    if not profile.scep.enabled:
        raise AdminError.kind(ErrorKind.CONFLICT, f"profile {body.profile!r} does not serve SCEP")
    ttl = dt.timedelta(seconds=body.ttl_seconds or profile.scep.challenge_ttl_seconds)
    with gateway.db.session() as session:
        issued = challenges.create_challenge(session, profile=body.profile,
                                             now=gateway.clock.now(), ttl=ttl, uses=body.uses,
                                             subject_pattern=body.subject_pattern)
    return schemas.ChallengeOut(id=issued.id, challenge=issued.secret, profile=issued.profile,
                                expires_at=issued.expires_at, uses=issued.uses,
                                subject_pattern=issued.subject_pattern)


@router.get("/challenges", response_model=list[schemas.ChallengeInfo], tags=["challenges"],
            responses=responses())
async def list_challenges(request: Request, _who: AsAuditor, profile: ProfileQuery = None
                         ) -> list[schemas.ChallengeInfo]:
    """Challenges handed out (never their secrets), newest first."""
    with gateway_of(request).db.session() as session:
        rows = queries.credentials_of(session, challenges.KIND, profile or None)
        return [schemas.ChallengeInfo(id=row.id, profile=row.profile or "",
                                      uses_left=row.uses_left, expires_at=row.expires_at,
                                      subject_pattern=(row.attributes or {}).get("subject_pattern"),
                                      disabled=row.disabled, created_at=row.created_at)
                for row in rows]


# -- ACME EAB keys ------------------------------------------------------------------------


@router.post("/eab-keys", response_model=schemas.EabOut, status_code=201, tags=["eab-keys"],
             responses=responses(404))
async def create_eab_key(request: Request, _who: AsAdmin, body: schemas.EabIn) -> schemas.EabOut:
    """An External Account Binding key (RFC 8555 §7.3.4): key id + HMAC key, shown once."""
    gateway = gateway_of(request)
    _profile(gateway, body.profile)
    now = gateway.clock.now()
    expires = now + dt.timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    with gateway.db.session() as session:
        kid, key = eab.create(session, profile=body.profile, kek=eab.load_kek(gateway.data_dir),
                              now=now, expires_at=expires)
    return schemas.EabOut(kid=kid, hmac_key=key, profile=body.profile)


@router.get("/eab-keys", response_model=list[schemas.EabInfo], tags=["eab-keys"],
            responses=responses())
async def list_eab_keys(request: Request, _who: AsAuditor, profile: ProfileQuery = None
                       ) -> list[schemas.EabInfo]:
    with gateway_of(request).db.session() as session:
        keys = eab.list_keys(session, profile or None)
    return [schemas.EabInfo(kid=k.kid, profile=k.profile, used=k.used,
                            bound_account=k.bound_account, disabled=k.disabled,
                            created_at=k.created_at) for k in keys]


@router.post("/eab-keys/{kid}/disable", response_model=schemas.EabInfo, tags=["eab-keys"],
             responses=responses(404))
async def disable_eab_key(request: Request, _who: AsAdmin, kid: NamePath) -> schemas.EabInfo:
    """Disable a key: it can no longer bind an account (a bound account stays bound)."""
    with gateway_of(request).db.session() as session:
        row = queries.credential_by_name(session, eab.KIND, kid)
        if row is None:
            raise AdminError.kind(ErrorKind.NOT_FOUND, f"no EAB key {kid!r}")
        row.disabled = True
        return schemas.EabInfo(kid=row.name, profile=row.profile or "",
                               used=(row.uses_left or 0) <= 0,
                               bound_account=(row.attributes or {}).get("account"),
                               disabled=True, created_at=row.created_at)


# -- EST users ----------------------------------------------------------------------------


def _user_info(row: CredentialRow) -> schemas.UserInfo:
    return schemas.UserInfo(profile=row.profile or "", name=row.name, disabled=row.disabled,
                            created_at=row.created_at)


@router.get("/users", response_model=list[schemas.UserInfo], tags=["users"],
            responses=responses())
async def list_users(request: Request, _who: AsAuditor, profile: ProfileQuery = None
                    ) -> list[schemas.UserInfo]:
    """HTTP Basic users of EST (never their passwords)."""
    with gateway_of(request).db.session() as session:
        return [_user_info(row) for row in queries.credentials_of(session, PASSWORD_KIND,
                                                                 profile or None)]


@router.post("/users", response_model=schemas.UserInfo, status_code=201, tags=["users"],
             responses=responses(404))
async def put_user(request: Request, _who: AsAdmin, body: schemas.UserIn) -> schemas.UserInfo:
    """Add an EST user, or set a new password (and re-enable) an existing one."""
    gateway = gateway_of(request)
    _profile(gateway, body.profile)
    hashed = hash_secret(body.password)
    with gateway.db.session() as session:
        row = credentials.find(session, kind=PASSWORD_KIND, profile=body.profile, name=body.name)
        if row is None:
            row = credentials.add(session, kind=PASSWORD_KIND, profile=body.profile,
                                  name=body.name, secret_hash=hashed, now=gateway.clock.now())
        else:
            row.secret_hash, row.disabled = hashed, False
        return _user_info(row)


@router.post("/users/{profile}/{name}/disable", response_model=schemas.UserInfo,
             tags=["users"], responses=responses(404))
async def disable_user(request: Request, _who: AsAdmin, profile: NamePath, name: NamePath
                      ) -> schemas.UserInfo:
    """Disable an EST user (takes effect within the EST verification cache TTL)."""
    with gateway_of(request).db.session() as session:
        row = credentials.find(session, kind=PASSWORD_KIND, profile=profile, name=name)
        if row is None:
            raise AdminError.kind(ErrorKind.NOT_FOUND, f"no user {name!r} in profile {profile!r}")
        row.disabled = True
        return _user_info(row)
