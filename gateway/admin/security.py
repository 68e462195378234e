"""Admin API authentication (RFC 6750 bearer tokens), roles, and the audit of every call.

``AuditedRoute`` wraps each admin route: whatever happens (success, a validation error,
a refused token, a domain error), the answer is the admin API's JSON error format and one
audit event records who called what and how it ended.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from gateway.admin.errors import AdminError, describe_validation, error_response
from gateway.auth.tokens import Role, TokenIdentity, authenticate
from gateway.errors import ErrorKind, GatewayError
from gateway.runtime import Gateway
from gateway.store import audit
from gateway.store.certificates import normalize_serial

_bearer = HTTPBearer(auto_error=False, description="`gatehouse token create --role ROLE`")
_HEX = re.compile(r"^(0x)?[0-9A-Fa-f:]{1,100}$")
_UUID = re.compile(r"^[0-9a-f-]{36}$")


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def identify(request: Request, token: str) -> TokenIdentity | None:
    """Check a token and remember its holder on the request (for the audit event)."""
    gateway = gateway_of(request)
    with gateway.db.session() as session:
        identity = authenticate(session, token, now=gateway.clock.now())
    if identity is not None:
        request.state.admin = identity
    return identity


def require(role: Role) -> Callable[..., Awaitable[TokenIdentity]]:
    """A dependency: the caller's token, which must have at least ``role``."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> TokenIdentity:
        challenge = {"WWW-Authenticate": 'Bearer realm="gatehouse"'}
        if request.url.scheme != "https":
            # Tokens are credentials: never accepted over the plain-HTTP listener.
            raise AdminError.kind(ErrorKind.FORBIDDEN, "the admin API is only served over HTTPS")
        if credentials is None:
            raise AdminError.kind(ErrorKind.UNAUTHORIZED, "an API token is required "
                                  "(Authorization: Bearer TOKEN)", challenge)
        identity = identify(request, credentials.credentials)
        if identity is None:
            raise AdminError.kind(
                ErrorKind.UNAUTHORIZED, "unknown, disabled or expired token",
                {"WWW-Authenticate": 'Bearer realm="gatehouse", error="invalid_token"'})
        if not identity.role.allows(role):
            raise AdminError.kind(
                ErrorKind.FORBIDDEN,
                f"the {identity.role.value} role cannot do this (needs {role.value})")
        return identity

    return dependency


AsAuditor = Annotated[TokenIdentity, Depends(require(Role.AUDITOR))]
AsOperator = Annotated[TokenIdentity, Depends(require(Role.OPERATOR))]
AsAdmin = Annotated[TokenIdentity, Depends(require(Role.ADMIN))]


def actor_of(identity: TokenIdentity) -> str:
    return f"token:{identity.name}"


class AuditedRoute(APIRoute):
    """A route whose every call is an audit event and whose errors are JSON bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        action = f"admin.{self.name}"

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except AdminError as exc:
                response = error_response(exc)
            except GatewayError as exc:
                response = error_response(AdminError.of(exc))
            except RequestValidationError as exc:
                response = error_response(
                    AdminError(422, "invalid-request", describe_validation(list(exc.errors()))))
            except HTTPException as exc:  # FastAPI's own, e.g. a body that is not JSON
                kind = "malformed" if exc.status_code == 400 else "http-error"
                response = error_response(AdminError(exc.status_code, kind, str(exc.detail)))
            record_call(request, action, response.status_code)
            return response

        return handler


def record_call(request: Request, action: str, status: int) -> None:
    """One audit event for an admin call (API or console)."""
    gateway = gateway_of(request)
    identity: TokenIdentity | None = getattr(request.state, "admin", None)
    params = request.path_params
    serial = params.get("serial")
    request_id = params.get("request_id")
    outcome = "ok" if status < 400 else "denied" if status in (401, 403) else "error"
    with gateway.db.session() as session:
        audit.record(
            session, at=gateway.clock.now(),
            actor=actor_of(identity) if identity else "anonymous",
            action=action[:64], outcome=outcome,
            request_id=request_id if isinstance(request_id, str) and _UUID.match(request_id)
            else None,
            serial=normalize_serial(serial)[:64]
            if isinstance(serial, str) and _HEX.match(serial) else None,
            method=request.method, path=request.url.path[:300], status=status,
            role=identity.role.value if identity else None)
