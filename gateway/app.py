"""The FastAPI application factory: the gateway's own routes plus each protocol's."""

from __future__ import annotations

import importlib

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import ErrorKind, GatewayError
from gateway.middleware import BodyLimitMiddleware, UnexpectedErrorMiddleware
from gateway.revocation.routes import router as revocation_router
from gateway.runtime import Gateway

# Protocol front ends mounted when present; each exposes ``router`` (an APIRouter).
PROTOCOL_MODULES = ("protocols.est.router", "protocols.scep.router", "protocols.acme.router",
                    "gateway.admin.router")  # admin API, console, /metrics


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Gatehouse", version="0.1.0", docs_url="/admin/docs",
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
            checks[f"backend:{name}"] = {"ok": health.ok, "detail": health.detail}
            ready = ready and health.ok
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> Response:
        status = 404 if exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.UNKNOWN_PROFILE) else 400
        return JSONResponse({"error": exc.kind.value, "detail": exc.detail}, status_code=status)

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
    app.add_middleware(UnexpectedErrorMiddleware)
    return app
