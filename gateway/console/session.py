"""Console sign-in: the admin API token, kept in an HttpOnly, Secure, SameSite=Strict
cookie; every form carries a CSRF token derived from it (double submit, HMAC-bound).

SameSite=Strict already keeps cross-site forms from carrying the cookie; the CSRF field
is the second fence for browsers that ignore SameSite.  The token itself never appears in
a page.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from gateway.admin.security import identify
from gateway.auth.tokens import TokenIdentity

COOKIE = "gatehouse_console"
MAX_AGE = 8 * 3600  # seconds: one working day


def signed_in(request: Request) -> TokenIdentity | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return identify(request, token)


def csrf_token(request: Request) -> str:
    token = request.cookies.get(COOKIE, "")
    return hmac.new(token.encode(), b"gatehouse-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(request: Request, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(csrf_token(request), submitted or "")
