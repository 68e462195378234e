"""Console sign-in: a server-side session behind an opaque cookie, and CSRF values.

Signing in with an API token creates a row in ``console_sessions`` (gateway.store); the
browser gets only a random session id in an ``HttpOnly; Secure; SameSite=Strict``
``__Host-`` cookie, never the token.  A session ends at sign-out (the row is deleted, so a
replayed cookie is refused), after ``IDLE`` without a request, ``LIFETIME`` after sign-in,
or as soon as its token is disabled or expires.

CSRF: every form of a signed-in page carries HMAC(session id, purpose), checked on each
POST, sign-out included.  The sign-in form itself (no session yet) uses a double-submit
value: a random ``__Host-`` cookie that the form must echo, so a cross-site page cannot
sign a victim's browser in to the attacker's token.  SameSite=Strict is the first fence;
these values are the second, for browsers that ignore SameSite.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from fastapi import Request, Response

from gateway.auth.tokens import TokenIdentity, identity_of
from gateway.runtime import Gateway
from gateway.store import console_sessions

COOKIE = "__Host-gatehouse_console"
LOGIN_COOKIE = "__Host-gatehouse_login"
IDLE = dt.timedelta(hours=1)
LIFETIME = dt.timedelta(hours=8)  # one working day, whatever the activity
LOGIN_FORM_AGE = 3600  # seconds a sign-in form stays usable


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def signed_in(request: Request) -> TokenIdentity | None:
    """The token holder of the request's live session, or None."""
    session_id = request.cookies.get(COOKIE, "")
    if not session_id or len(session_id) > 128:
        return None
    gateway = _gateway(request)
    now = gateway.clock.now()
    with gateway.db.session() as session:
        row = console_sessions.find_live(session, session_id, now=now, idle=IDLE)
        identity = identity_of(session, row.token_id, now=now) if row else None
    if identity is not None:
        request.state.admin = identity  # the audit event's actor
    return identity


def start(request: Request, response: Response, identity: TokenIdentity) -> None:
    """Open a session for ``identity`` and give ``response`` its cookie."""
    gateway = _gateway(request)
    with gateway.db.session() as session:
        session_id = console_sessions.create(session, token_id=identity.id,
                                             now=gateway.clock.now(), lifetime=LIFETIME)
    response.set_cookie(COOKIE, session_id, max_age=int(LIFETIME.total_seconds()),
                        httponly=True, secure=True, samesite="strict", path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")


def end(request: Request, response: Response) -> None:
    """Delete the request's session server-side and clear its cookie."""
    session_id = request.cookies.get(COOKIE, "")
    if session_id and len(session_id) <= 128:
        gateway = _gateway(request)
        with gateway.db.session() as session:
            console_sessions.end(session, session_id)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def csrf_token(request: Request) -> str:
    """The CSRF value of the request's session (empty without one)."""
    session_id = request.cookies.get(COOKIE, "")
    if not session_id:
        return ""
    return hmac.new(session_id.encode(), b"gatehouse-console-csrf", hashlib.sha256).hexdigest()


def _same(expected: str, submitted: str | None) -> bool:
    return bool(expected) and bool(submitted) and hmac.compare_digest(
        expected.encode(), (submitted or "").encode())


def csrf_ok(request: Request, submitted: str | None) -> bool:
    return _same(csrf_token(request), submitted)


def new_login_csrf() -> str:
    """A fresh sign-in form value; ``set_login_csrf`` puts it in the cookie too."""
    return secrets.token_urlsafe(24)


def set_login_csrf(response: Response, value: str) -> None:
    response.set_cookie(LOGIN_COOKIE, value, max_age=LOGIN_FORM_AGE, httponly=True,
                        secure=True, samesite="strict", path="/")


def login_csrf_ok(request: Request, submitted: str | None) -> bool:
    return _same(request.cookies.get(LOGIN_COOKIE, ""), submitted)
