"""SCEP HTTP binding (RFC 8894 §4): one handler for every path and both listeners.

Paths: ``/scep`` and ``/cgi-bin/pkiclient.exe`` (the default profile), ``/scep/<path>``
and ``/scep/<path>/pkiclient.exe`` / ``/scep/<path>/cgi-bin/pkiclient.exe`` (a profile).
Operations: GetCACaps, GetCACert, GetNextCACert (GET) and PKIOperation (GET with a
base64 ``message``, or POST with the binary pkiMessage).
"""

from __future__ import annotations

import base64
import binascii
import logging

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from gateway.errors import GatewayError, client_detail, http_status, retry_after
from gateway.protocol_settings.scep import ChallengeMode, ScepProfileSettings
from gateway.ra import NoRaIssuer, ensure_ra
from gateway.runtime import Gateway
from protocols.cms import certs_only
from protocols.scep import certrep, webhook
from protocols.scep.errors import Unreadable
from protocols.scep.operations import Endpoint, PkiOperations

log = logging.getLogger("gatehouse.scep")

PKI_MESSAGE = "application/x-pki-message"
CA_RA_CERT = "application/x-x509-ca-ra-cert"
NEXT_CA_CERT = "application/x-x509-next-ca-cert"


def _warn_weak_transport(name: str, settings: ScepProfileSettings) -> None:
    """Start-up WARNINGs for the profile's legacy switches (issue #10 rule 12)."""
    if settings.legacy_algorithms or settings.accept_legacy_requests:
        log.warning("SCEP profile accepts legacy algorithms (SHA-1, DES, 3DES)",
                    extra={"profile": name})
    if settings.webhook_url and settings.webhook_url.lower().startswith("http://"):
        log.warning("SCEP webhook over plain HTTP (webhook_allow_http)",
                    extra={"profile": name})
    if settings.challenge is ChallengeMode.WEBHOOK and webhook.secret_of(settings) is None:
        log.error("SCEP webhook signing key is not set: every challenge will be refused",
                  extra={"profile": name, "variable": settings.webhook_secret_env})


class ScepFrontEnd:
    """Endpoints by URL segment, with their static answers computed once."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._operations = PkiOperations(gateway)
        self._endpoints: dict[str, Endpoint] = {}
        self._default: str | None = None
        for name, profile in gateway.config.profiles.items():
            if not profile.scep.enabled:
                continue
            try:
                ra = ensure_ra(gateway.config, gateway.data_dir, name, clock=gateway.clock)
            except NoRaIssuer as exc:
                log.warning("SCEP not served", extra={"profile": name, "reason": str(exc)})
                continue
            self._endpoints[profile.scep.path or name] = Endpoint(name, profile, ra)
            _warn_weak_transport(name, profile.scep)
            if name == gateway.config.default_profile:
                self._default = profile.scep.path or name
        self._max = gateway.config.scep.max_message_bytes
        self._ca_cert_cache: dict[str, tuple[tuple[bytes, ...], bytes]] = {}

    def endpoint(self, segment: str | None) -> Endpoint | None:
        key = self._default if segment is None else segment
        return self._endpoints.get(key) if key is not None else None

    async def handle(self, request: Request, segment: str | None) -> Response:
        endpoint = self.endpoint(segment)
        if endpoint is None:
            return PlainTextResponse("no SCEP service at this path\n", status_code=404)
        operation = request.query_params.get("operation", "")
        op = operation.lower()
        if op == "getcacaps":
            return PlainTextResponse(self._caps(endpoint))
        if op == "getcacert":
            try:
                return Response(await self._ca_cert(endpoint), media_type=CA_RA_CERT)
            except GatewayError as exc:
                return _http_error(exc)
        if op == "getnextcacert":
            return await self._next_ca_cert(endpoint)
        if op == "pkioperation":
            return await self._pki_operation(request, endpoint)
        return PlainTextResponse(f"unknown SCEP operation {operation[:40]!r}\n", status_code=400)

    # -- CA information (RFC 8894 §3.5, §4.2, §4.7) ------------------------------------

    def _caps(self, endpoint: Endpoint) -> str:
        caps = ["POSTPKIOperation", "SHA-256", "SHA-512", "AES", "SCEPStandard", "Renewal"]
        if self._gateway.ca.has_successor(endpoint.profile_name):
            caps.append("GetNextCACert")
        if endpoint.profile.scep.legacy_algorithms:
            caps += ["SHA-1", "DES3"]
        return "\n".join(caps) + "\n"

    async def _ca_cert(self, endpoint: Endpoint) -> bytes:
        """The RA certificate(s) and the issuing chain (RFC 8894 §4.2.1.2); cached per chain.

        One certs-only bag, in DER SET OF order (not RA first): clients find the RA by
        its properties or fingerprint (protocols.cms.certs_only).
        """
        chain = await self._gateway.ca.chain_for(endpoint.profile_name)
        ders = tuple(c.public_bytes(Encoding.DER) for c in chain)
        if endpoint.profile.scep.issuing_ca_only:
            ders = ders[:1]
        cached = self._ca_cert_cache.get(endpoint.profile_name)
        if cached is None or cached[0] != ders:  # the chain changes at a CA rollover
            extra = [d for d in endpoint.ra.extra_der if d not in ders]
            cached = (ders, certs_only([endpoint.ra.der, *extra, *ders]))
            self._ca_cert_cache[endpoint.profile_name] = cached
        return cached[1]

    async def _next_ca_cert(self, endpoint: Endpoint) -> Response:
        upcoming = self._gateway.ca.next_chain_for(endpoint.profile_name)
        if not upcoming:
            return PlainTextResponse("no CA rollover is pending\n", status_code=404)
        ders = tuple(c.public_bytes(Encoding.DER) for c in upcoming)
        if endpoint.profile.scep.issuing_ca_only:
            ders = ders[:1]
        return Response(certrep.next_ca(endpoint.ra, ders), media_type=NEXT_CA_CERT)

    # -- PKIOperation (RFC 8894 §4.3) ---------------------------------------------------

    async def _pki_operation(self, request: Request, endpoint: Endpoint) -> Response:
        if request.method == "POST":
            body = await request.body()
            if body[:1] != b"\x30":
                body = _maybe_base64(body)  # a few clients POST base64 text
        else:
            body = _maybe_base64(request.query_params.get("message", "").encode())
        if not body:
            return PlainTextResponse("PKIOperation needs a pkiMessage\n", status_code=400)
        if len(body) > self._max:
            return PlainTextResponse(f"pkiMessage larger than {self._max} bytes\n",
                                     status_code=400)
        try:
            answer = await self._operations.handle(endpoint, body)
        except Unreadable as exc:
            return PlainTextResponse(f"unreadable pkiMessage: {exc.detail}\n", status_code=400)
        return Response(answer, media_type=PKI_MESSAGE)


def _http_error(exc: GatewayError) -> Response:
    """GetCACert when the backend cannot give its chain: the core's status for the kind
    (503 + Retry-After for an outage: the client retries), but never a client error, as the
    client asked nothing wrong; the detail stays in the log."""
    status = max(http_status(exc.kind), 500)
    retry = retry_after(exc) if status == 503 else None
    headers = {"Retry-After": str(retry)} if retry else None
    return PlainTextResponse(client_detail(exc) + "\n", status_code=status, headers=headers)


def _maybe_base64(data: bytes) -> bytes:
    # Query parsing turns an unescaped '+' into ' ' (Cisco IOS sends them raw).
    text = data.strip().replace(b" ", b"+").replace(b"\r", b"").replace(b"\n", b"")
    text = text.replace(b"-", b"+").replace(b"_", b"/")  # base64url from some MDMs
    text += b"=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def mount(app: FastAPI, gateway: Gateway) -> None:
    """Serve SCEP at /scep, /scep/<profile> and /cgi-bin/pkiclient.exe (GET and POST)."""
    front = ScepFrontEnd(gateway)

    async def default_profile(request: Request) -> Response:
        return await front.handle(request, None)

    async def named_profile(request: Request, segment: str) -> Response:
        return await front.handle(request, segment)

    methods = ["GET", "POST"]
    for path in ("/scep", "/scep/", "/cgi-bin/pkiclient.exe", "/scep/pkiclient.exe",
                 "/scep/cgi-bin/pkiclient.exe"):
        app.add_api_route(path, default_profile, methods=methods, include_in_schema=False)
    for path in ("/scep/{segment}", "/scep/{segment}/pkiclient.exe",
                 "/scep/{segment}/cgi-bin/pkiclient.exe"):
        app.add_api_route(path, named_profile, methods=methods, include_in_schema=False)
