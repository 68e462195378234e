"""Challenge validation by webhook (the Intune / Jamf model, RFC 8894 §2.3 left open).

The gateway POSTs JSON describing the request to the profile's ``webhook_url``:
``{"profile", "transaction_id", "challenge", "csr" (PEM), "subject", "sans": [..],
"key"}``.  A 2xx answer whose JSON has ``"allow": true`` approves; anything else —
another status, ``allow`` false or missing, a timeout, a connection error — refuses
(CertRep FAILURE badRequest), with the webhook's ``reason`` when it gives one.

Every call is signed (issue #10 rule 12) with the key in the environment variable
``webhook_secret_env`` names, Stripe-style::

    X-Gatehouse-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>." + raw body)>

The receiver recomputes the HMAC over the raw body bytes it received, compares it in
constant time, and refuses a ``t`` more than a few minutes from its clock (replay).  The
URL is https (verified against ``webhook_ca_cert`` or the system store) unless the profile
sets ``webhook_allow_http``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from gateway.config import resolve_path
from gateway.errors import ErrorKind, GatewayError
from gateway.model import Principal, PrincipalKind
from gateway.policy import Denied, csr_identifiers, key_description
from gateway.protocol_settings.scep import ScepProfileSettings

SIGNATURE_HEADER = "X-Gatehouse-Signature"
log = logging.getLogger("gatehouse.scep")


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def secret_of(settings: ScepProfileSettings) -> bytes | None:
    """The signing key from the environment, or None when it is not set."""
    value = os.environ.get(settings.webhook_secret_env or "") if settings.webhook_secret_env \
        else None
    return value.encode() if value else None


def _verify(settings: ScepProfileSettings, data_dir: Path) -> ssl.SSLContext | bool:
    if not settings.webhook_ca_cert:
        return True
    return ssl.create_default_context(cafile=str(resolve_path(data_dir,
                                                              settings.webhook_ca_cert)))


async def validate(settings: ScepProfileSettings, *, data_dir: Path, profile: str,
                   transaction_id: str, challenge: str, csr: x509.CertificateSigningRequest,
                   csr_der: bytes) -> Principal:
    """Ask the webhook; the Principal on approval, GatewayError(UNAUTHORIZED) otherwise."""
    url, key = settings.webhook_url, secret_of(settings)
    if url is None or key is None:
        log.error("SCEP webhook not usable: webhook_url or the signing key is missing",
                  extra={"profile": profile, "variable": settings.webhook_secret_env})
        raise GatewayError(ErrorKind.UNAUTHORIZED,
                           "the challenge could not be validated (webhook unavailable)")
    pem = ("-----BEGIN CERTIFICATE REQUEST-----\n"
           + "\n".join(_wrap(base64.b64encode(csr_der).decode()))
           + "\n-----END CERTIFICATE REQUEST-----\n")
    try:
        sans = [str(i) for i in csr_identifiers(csr)]
    except Denied:
        sans = []  # names the policy cannot issue: it refuses them after the webhook
    payload = {"profile": profile, "transaction_id": transaction_id, "challenge": challenge,
               "csr": pem, "subject": csr.subject.rfc4514_string(), "sans": sans,
               "key": key_description(csr)}
    content = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: signature(key, int(time.time()), content)}
    try:
        async with httpx.AsyncClient(timeout=settings.webhook_timeout,
                                     verify=_verify(settings, data_dir),
                                     follow_redirects=False) as client:
            response = await client.post(url, content=content, headers=headers)
        body: Any = response.json() if response.content else {}
    except (httpx.HTTPError, ValueError, OSError) as exc:
        raise GatewayError(ErrorKind.UNAUTHORIZED,
                           "the challenge could not be validated (webhook unreachable)") from exc
    if not 200 <= response.status_code < 300 or not isinstance(body, dict) \
            or body.get("allow") is not True:
        reason = body.get("reason") if isinstance(body, dict) else None
        raise GatewayError(ErrorKind.UNAUTHORIZED, "the challenge was refused"
                           + (f": {str(reason)[:120]}" if reason else ""))
    principal_id = str(body.get("id") or f"webhook:{profile}")[:200]
    return Principal(PrincipalKind.SCEP_CHALLENGE, principal_id, {"challenge": "webhook"})


def _wrap(text: str, width: int = 64) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)]
