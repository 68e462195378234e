"""The web console at ``/console``: server-rendered pages over the same services and roles
as the admin API.  Every page view and action is an audit event (``console.*``).

Actions are HTML forms posted with a CSRF field, answered by a 303 redirect that carries
a short notice (Post/Redirect/Get), so reloading a page never repeats an action.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gateway.admin.queries import expiring, issued_per_day
from gateway.admin.security import actor_of, identify, record_call
from gateway.auth.tokens import Role, TokenIdentity
from gateway.console import actions
from gateway.console.session import (
    csrf_ok,
    csrf_token,
    end,
    login_csrf_ok,
    new_login_csrf,
    set_login_csrf,
    signed_in,
    start,
)
from gateway.model import RequestState
from gateway.request_records import view
from gateway.runtime import Gateway
from gateway.store import certificates, requests
from gateway.store.certificates import CertificateFilter, chain_of
from gateway.store.requests import RequestFilter, count_by_state

HERE = Path(__file__).parent
MAX_FORM = 16384


class Pages:
    """Renders templates with what every page needs (who, CSRF field, notice)."""

    def __init__(self) -> None:
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(["html"]), trim_blocks=True,
                               lstrip_blocks=True)

    def render(self, request: Request, template: str, who: TokenIdentity | None,
               status: int = 200, **context: Any) -> HTMLResponse:
        page = self.env.get_template(template).render(
            who=who, csrf=csrf_token(request) if who else "",
            notice=request.query_params.get("notice", "")[:300],
            error=request.query_params.get("error", "")[:300],
            can_operate=bool(who and who.role.allows(Role.OPERATOR)),
            can_admin=bool(who and who.role.allows(Role.ADMIN)), path=request.url.path,
            **context)
        return HTMLResponse(page, status_code=status, headers=_SECURITY_HEADERS)


_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _to_https(gateway: Gateway, request: Request) -> RedirectResponse:
    """The console is only served over HTTPS (the token is a credential)."""
    return RedirectResponse(gateway.config.public_https_url() + request.url.path, status_code=303)


def _redirect(path: str, **query: str) -> RedirectResponse:
    target = path + ("?" + urllib.parse.urlencode(query) if query else "")
    return RedirectResponse(target, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {k: v[0] for k, v in urllib.parse.parse_qs(text, max_num_fields=50).items()}


def build_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    pages = Pages()

    def page(request: Request, action: str, needed: Role = Role.AUDITOR
             ) -> TokenIdentity | Response:
        if request.url.scheme != "https":
            return _to_https(gateway, request)
        who = signed_in(request)
        if who is None:
            record_call(request, f"console.{action}", 401)
            return _redirect("/console/login")
        if not who.role.allows(needed):
            record_call(request, f"console.{action}", 403)
            return pages.render(request, "error.html", who, 403,
                                message=f"The {who.role.value} role cannot do this.")
        return who

    def login_page(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        value = new_login_csrf()
        response = pages.render(request, "login.html", None, status, login_csrf=value,
                                **context)
        set_login_csrf(response, value)
        return response

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        if request.url.scheme != "https":
            return _to_https(gateway, request)
        return login_page(request)

    @router.post("/login")
    async def login(request: Request) -> Response:
        if request.url.scheme != "https":  # a token must not travel in clear text
            return _to_https(gateway, request)
        form = await _form(request)
        if not login_csrf_ok(request, form.get("csrf")):
            record_call(request, "console.csrf", 403)
            return login_page(request, 403, login_error="The sign-in form expired: try again.")
        token = form.get("token", "").strip()
        who = identify(request, token) if token else None
        record_call(request, "console.login", 303 if who else 401)
        if who is None:
            return login_page(request, 401,
                              login_error="That token is unknown, disabled or expired.")
        response = _redirect("/console/")
        start(request, response, who)  # the cookie holds a session id, never the token
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        who = signed_in(request)
        form = await _form(request)
        if who is not None and not csrf_ok(request, form.get("csrf")):
            record_call(request, "console.csrf", 403)
            return pages.render(request, "error.html", who, 403, message="Form expired: reload.")
        record_call(request, "console.logout", 303)
        response = _redirect("/console/login")
        end(request, response)
        return response

    @router.get("")
    async def root(_request: Request) -> Response:
        return _redirect("/console/")

    @router.get("/")
    async def dashboard(request: Request) -> Response:
        who = page(request, "dashboard")
        if isinstance(who, Response):
            return who
        now = gateway.clock.now()
        with gateway.db.session() as session:
            daily = issued_per_day(session, since=(now - dt.timedelta(days=13)).replace(
                hour=0, minute=0, second=0, microsecond=0))
            queue = count_by_state(session, (RequestState.HELD, RequestState.SUBMITTED,
                                             RequestState.PENDING, RequestState.RECEIVED))
            soon = expiring(session, now=now, within=dt.timedelta(days=30))
        health = await gateway.backends.health()
        record_call(request, "console.dashboard", 200)
        return pages.render(request, "dashboard.html", who, daily=_chart(daily, now),
                            queue=queue, health=health, expiring=soon, now=now)

    @router.get("/requests")
    async def pending(request: Request) -> Response:
        who = page(request, "requests")
        if isinstance(who, Response):
            return who
        state_text = request.query_params.get("state", "held")
        state = RequestState(state_text) if state_text in set(RequestState) else None
        items = gateway.enrollment.list_requests(RequestFilter(state=state, limit=200))
        record_call(request, "console.requests", 200)
        return pages.render(request, "requests.html", who, items=items,
                            state=state.value if state else "all", states=list(RequestState))

    @router.post("/requests/{request_id}/{verb}")
    async def decide(request: Request, request_id: str, verb: str) -> Response:
        who = page(request, f"request.{verb}"[:40], Role.OPERATOR)
        if isinstance(who, Response):
            return who
        form = await _form(request)
        if not csrf_ok(request, form.get("csrf")):
            record_call(request, "console.csrf", 403)
            return pages.render(request, "error.html", who, 403, message="Form expired: reload.")
        outcome = await actions.decide(gateway, request_id, verb, by=actor_of(who),
                                       reason=form.get("reason", ""))
        record_call(request, f"console.request.{verb}"[:64], 303 if outcome.ok else 400)
        return _redirect("/console/requests", **outcome.query())

    @router.get("/certificates")
    async def search(request: Request) -> Response:
        who = page(request, "certificates")
        if isinstance(who, Response):
            return who
        params = request.query_params
        where = actions.certificate_filter(params)
        with gateway.db.session() as session:
            rows = certificates.search(session, where) if where else certificates.search(
                session, CertificateFilter(limit=50))
        record_call(request, "console.certificates", 200)
        return pages.render(request, "certificates.html", who, rows=rows,
                            query={k: params.get(k, "") for k in actions.SEARCH_FIELDS})

    @router.get("/certificates/{serial}")
    async def certificate(request: Request, serial: str) -> Response:
        who = page(request, "certificate")
        if isinstance(who, Response):
            return who
        with gateway.db.session() as session:
            row = certificates.get(session, serial) if actions.SERIAL.fullmatch(serial) else None
            chain = [actions.pem(der) for der in chain_of(row)] if row else []
        record_call(request, "console.certificate", 200 if row else 404)
        if row is None:
            return pages.render(request, "error.html", who, 404, message="No such certificate.")
        return pages.render(request, "certificate.html", who, cert=row, pem=actions.pem(row.der),
                            chain=chain, reasons=actions.REASONS)

    @router.post("/certificates/{serial}/revoke")
    async def revoke(request: Request, serial: str) -> Response:
        who = page(request, "revoke", Role.ADMIN)
        if isinstance(who, Response):
            return who
        form = await _form(request)
        if not csrf_ok(request, form.get("csrf")):
            record_call(request, "console.csrf", 403)
            return pages.render(request, "error.html", who, 403, message="Form expired: reload.")
        outcome = await actions.revoke(gateway, serial, form.get("reason", "unspecified"),
                                       by=actor_of(who))
        record_call(request, "console.revoke", 303 if outcome.ok else 400)
        target = f"/console/certificates/{serial}" if actions.SERIAL.fullmatch(serial) \
            else "/console/certificates"
        return _redirect(target, **outcome.query())

    @router.get("/credentials")
    async def credentials_page(request: Request) -> Response:
        who = page(request, "credentials")
        if isinstance(who, Response):
            return who
        record_call(request, "console.credentials", 200)
        return pages.render(request, "credentials.html", who,
                            profiles=list(gateway.config.profiles), created=None)

    @router.post("/credentials/{kind}")
    async def create_credential(request: Request, kind: str) -> Response:
        needed = Role.OPERATOR if kind == "challenge" else Role.ADMIN
        who = page(request, f"create.{kind}"[:40], needed)
        if isinstance(who, Response):
            return who
        form = await _form(request)
        if not csrf_ok(request, form.get("csrf")):
            record_call(request, "console.csrf", 403)
            return pages.render(request, "error.html", who, 403, message="Form expired: reload.")
        created, problem = actions.create_credential(gateway, kind, form)
        record_call(request, f"console.create.{kind}"[:64], 200 if created else 400)
        # The secret is shown once, in this response; never in a URL.
        return pages.render(request, "credentials.html", who, 200 if created else 400,
                            profiles=list(gateway.config.profiles), created=created,
                            form_error=problem)

    @router.get("/audit")
    async def audit_page(request: Request) -> Response:
        who = page(request, "audit")
        if isinstance(who, Response):
            return who
        where = actions.audit_filter(request.query_params)
        with gateway.db.session() as session:
            events = actions.audit_rows(session, where)
        record_call(request, "console.audit", 200)
        return pages.render(request, "audit.html", who, events=events,
                            query={k: request.query_params.get(k, "")
                                   for k in ("actor", "action", "outcome", "serial")})

    @router.get("/requests/{request_id}")
    async def request_detail(request: Request, request_id: str) -> Response:
        who = page(request, "request")
        if isinstance(who, Response):
            return who
        with gateway.db.session() as session:
            row = requests.get(session, request_id) if actions.UUID.fullmatch(request_id) \
                else None
            item = view(row) if row else None
        record_call(request, "console.request", 200 if item else 404)
        if item is None:
            return pages.render(request, "error.html", who, 404, message="No such request.")
        return pages.render(request, "request.html", who, item=item)

    return router


def _chart(daily: list[Any], now: dt.datetime) -> dict[str, Any]:
    """Issued per day, stacked by protocol and backend, scaled for CSS bars."""
    days = [(now - dt.timedelta(days=offset)).strftime("%Y-%m-%d") for offset in range(13, -1, -1)]
    series = sorted({f"{d.protocol} / {d.backend}" for d in daily})
    counts = {(d.day, f"{d.protocol} / {d.backend}"): d.count for d in daily}
    totals = {day: sum(counts.get((day, s), 0) for s in series) for day in days}
    top = max(totals.values(), default=0) or 1
    rows = [{"day": day, "total": totals[day],
             "parts": [{"series": s, "index": i, "count": counts.get((day, s), 0),
                        "pct": round(100 * counts.get((day, s), 0) / top, 1)}
                       for i, s in enumerate(series) if counts.get((day, s), 0)]}
            for day in days]
    return {"rows": rows, "series": series, "total": sum(totals.values())}


def mount(app: FastAPI, gateway: Gateway) -> None:
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(build_router(gateway))
