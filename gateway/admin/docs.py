"""``/admin/docs``: the admin API reference as one self-contained HTML page.

FastAPI's Swagger UI loads its script and style from a third-party CDN, which would let
that CDN run code in the gateway's origin.  This page is rendered on the server from the
same OpenAPI document (``/admin/openapi.json``), with no script and no external asset;
``Content-Security-Policy: default-src 'none'`` keeps it so.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_METHODS = ("get", "post", "put", "patch", "delete")
_STYLE = ("body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;"
          "padding:0 1rem}table{border-collapse:collapse;width:100%}td,th{text-align:left;"
          "padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}"
          "code{font-size:14px}")


def render(schema: dict[str, Any]) -> str:
    """The operations of ``schema`` as a table: method, path, summary, description."""
    info = schema.get("info", {})
    rows = []
    for path, item in sorted(schema.get("paths", {}).items()):
        for method in _METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            summary = html.escape(str(operation.get("summary", "")))
            description = html.escape(str(operation.get("description", "")).strip())
            rows.append(f"<tr><td><code>{method.upper()}</code></td>"
                        f"<td><code>{html.escape(path)}</code></td>"
                        f"<td><strong>{summary}</strong><br>{description}</td></tr>")
    title = html.escape(f"{info.get('title', 'Gatehouse')} admin API {info.get('version', '')}")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{title}</h1><p>Machine-readable: <a href=\"/admin/openapi.json\">"
            "/admin/openapi.json</a> (OpenAPI 3). Every call needs "
            "<code>Authorization: Bearer TOKEN</code> "
            "(<code>gatehouse token create --role ROLE</code>).</p>"
            "<table><thead><tr><th>Method</th><th>Path</th><th>What it does</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></body></html>")


def mount(app: FastAPI) -> None:
    @app.get("/admin/docs", include_in_schema=False)
    async def admin_docs(_request: Request) -> HTMLResponse:
        return HTMLResponse(render(app.openapi()), headers=HEADERS)
