"""The FastAPI application factory: the gateway's own routes plus each protocol's."""

from __future__ import annotations

import importlib
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import ErrorKind, GatewayError, client_detail
from gateway.middleware import BodyLimitMiddleware, UnexpectedErrorMiddleware
from gateway.revocation.routes import router as revocation_router
from gateway.runtime import Gateway
from gateway.transport import TransportPolicyMiddleware

# Protocol front ends mounted when present; each exposes ``router`` (an APIRouter).
PROTOCOL_MODULES = ("protocols.est.router", "protocols.scep.router", "protocols.acme.router",
                    "gateway.admin.router")  # admin API, console, /metrics


log = logging.getLogger("gatehouse.http")

_HTTP_STATUS = {ErrorKind.NOT_FOUND: 404, ErrorKind.UNKNOWN_PROFILE: 404,
                ErrorKind.BACKEND_UNAVAILABLE: 503, ErrorKind.INTERNAL: 500}


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Gatehouse", version="0.1.0", docs_url=None,
                  openapi_url="/admin/openapi.json", redoc_url=None)
    app.state.gateway = gateway

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Response:
        """Readiness: the database answers and each backend reports its health."""
        checks: dict[str, dict[str, object]] = {}
        ready = True
        try:
            gateway.db.check()
            checks["database"] = {"ok": True}
        except (SQLAlchemyError, OSError) as exc:
            checks["database"] = {"ok": False, "detail": type(exc).__name__}
            ready = False
        for name, health in (await gateway.backends.health()).items():
            # Unauthenticated: a failing backend's detail (its URL, the error) goes to the
            # log and the admin API only (docs/security.md, rule 10).
            detail = health.detail
            if not health.ok:
                log.warning("backend not ready", extra={"backend": name, "error": detail})
                detail = "unavailable"
            checks[f"backend:{name}"] = {"ok": health.ok, "detail": detail}
            ready = ready and health.ok
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> Response:
        # A backend outage is 503 + Retry-After, never a client error; its detail (and an
        # internal error's) goes to the log only (docs/security.md, rule 10).
        status = _HTTP_STATUS.get(exc.kind, 400)
        headers = {"Retry-After": str(exc.retry_after or 30)} if status == 503 else None
        return JSONResponse({"error": exc.kind.value, "detail": client_detail(exc)},
                            status_code=status, headers=headers)

    app.include_router(revocation_router)
    for module_name in PROTOCOL_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that front end is not part of this build
            raise
        module.mount(app, gateway)

    app.add_middleware(BodyLimitMiddleware, limit=gateway.config.server.max_body_bytes)
    # Outside the body limit: a refused plain-HTTP request is answered before its body is read.
    app.add_middleware(TransportPolicyMiddleware, https_url=gateway.config.public_https_url())
    app.add_middleware(UnexpectedErrorMiddleware)
    return app
