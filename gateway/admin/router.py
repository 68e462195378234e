"""Mount the admin API at ``/admin/api/``.

``gateway.app.create_app`` imports this module like a protocol front end and calls
``mount(app, gateway)``; it mounts the console (``gateway.console.routes``) and
``/metrics`` (``gateway.metrics``) beside it, so the admin API imports neither.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match

from gateway.admin import catalog, certificates, credentials, docs, requests
from gateway.admin.security import record_call
from gateway.runtime import Gateway

PREFIX = "/admin/api"


def api_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    for module in (certificates, requests, credentials, catalog):
        router.include_router(module.router)
    return router


def mount(app: FastAPI, gateway: Gateway) -> None:
    app.include_router(api_router())
    docs.mount(app)  # served locally, not FastAPI's CDN-hosted Swagger UI

    @app.api_route(PREFIX + "/{rest:path}", include_in_schema=False,
                   methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"])
    async def unknown_admin_route(request: Request, rest: str) -> JSONResponse:
        """JSON 404/405 for anything else under the admin API (recorded like every call)."""
        allowed: set[str] = set()
        for route in request.app.router.routes:
            if getattr(route, "endpoint", None) is unknown_admin_route:
                continue
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                match, _child = route.matches({**request.scope, "method": method})
                if match is Match.FULL:
                    allowed.add(method)
        if allowed:
            response = JSONResponse({"error": "method-not-allowed",
                                     "detail": f"{request.method} is not allowed here"},
                                    status_code=405, headers={"Allow": ", ".join(sorted(allowed))})
        else:
            response = JSONResponse({"error": "not-found", "detail": "no such admin endpoint"},
                                    status_code=404)
        record_call(request, "admin.unknown", response.status_code)
        return response
