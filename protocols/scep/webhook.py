"""Challenge validation by webhook (the Intune / Jamf model, RFC 8894 §2.3 left open).

The gateway POSTs JSON describing the request to the profile's ``webhook_url``:
``{"profile", "transaction_id", "challenge", "csr" (PEM), "subject", "sans": [..],
"key"}``.  A 2xx answer whose JSON has ``"allow": true`` approves; anything else —
another status, ``allow`` false or missing, a timeout, a connection error — refuses
(CertRep FAILURE badRequest), with the webhook's ``reason`` when it gives one.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
from cryptography import x509

from gateway.errors import ErrorKind, GatewayError
from gateway.model import Principal, PrincipalKind
from gateway.policy import Denied, csr_identifiers, key_description


async def validate(url: str, *, timeout: float, profile: str, transaction_id: str,
                   challenge: str, csr: x509.CertificateSigningRequest, csr_der: bytes
                   ) -> Principal:
    """Ask the webhook; the Principal on approval, GatewayError(UNAUTHORIZED) otherwise."""
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
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.post(url, json=payload)
        body: Any = response.json() if response.content else {}
    except (httpx.HTTPError, ValueError) as exc:
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
