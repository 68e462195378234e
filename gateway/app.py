"""The FastAPI application factory: the gateway's own routes plus each protocol's."""

from __future__ import annotations

import importlib
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import GatewayError, client_detail, http_status, retry_after
from gateway.middleware import BodyLimitMiddleware, UnexpectedErrorMiddleware
from gateway.revocation.routes import router as revocation_router
from gateway.runtime import Gateway
from gateway.transport import TransportPolicyMiddleware

# Front ends mounted when present, in this order; each exposes ``mount(app, gateway)``.
PROTOCOL_MODULES = ("protocols.est.router", "protocols.scep.router", "protocols.acme.router",
                    "gateway.admin.router", "gateway.console.routes", "gateway.metrics")


log = logging.getLogger("gatehouse.http")


def generic_error_response(exc: GatewayError) -> JSONResponse:
    """A ``GatewayError`` no protocol edge answered: the core's status for its kind
    (``EDGE_RULES``), Retry-After where the kind has one (a backend outage is 503 + Retry-After,
    never a client error), and only the client-safe detail (docs/security.md, rule 10)."""
    retry = retry_after(exc)
    headers = {"Retry-After": str(retry)} if retry else None
    return JSONResponse({"error": exc.kind.value, "detail": client_detail(exc)},
                        status_code=http_status(exc.kind), headers=headers)


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
        return generic_error_response(exc)

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
