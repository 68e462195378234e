"""HTTP endpoints for CRLs, OCSP and CA certificates (plain HTTP friendly, RFC 5280 §4.2.2.1)."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.errors import ErrorKind, GatewayError

router = APIRouter(tags=["revocation"])

_MAX_OCSP_REQUEST = 8192


def _gateway(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.gateway


@router.get("/crl/{backend}.crl")
async def crl_active(backend: str, request: Request) -> Response:
    """The CRL of the backend's active issuing CA (DER, application/pkix-crl)."""
    der = await _gateway(request).revocation.crl(backend)
    return Response(der, media_type="application/pkix-crl")


@router.get("/crl/{backend}/{issuer_id}.crl")
async def crl_of_issuer(backend: str, issuer_id: str, request: Request) -> Response:
    """The CRL of one issuing CA generation; the URL in issued certificates' CDP."""
    der = await _gateway(request).revocation.crl(backend, issuer_id)
    return Response(der, media_type="application/pkix-crl")


@router.get("/ca/{backend}/{issuer_id}.cer")
async def ca_issuer(backend: str, issuer_id: str, request: Request) -> Response:
    """The issuing CA certificate (DER); the caIssuers URL of issued certificates."""
    signer = _gateway(request).revocation.signer(backend)
    for issuer in signer.issuers():
        if issuer.id == issuer_id:
            return Response(issuer.certificate.public_bytes(Encoding.DER),
                            media_type="application/pkix-cert")
    raise GatewayError(ErrorKind.NOT_FOUND, f"no issuer {issuer_id!r}")


@router.post("/ocsp/{backend}")
async def ocsp_post(backend: str, request: Request) -> Response:
    """RFC 6960 Appendix A.1: DER request in the body."""
    body = await request.body()
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/ocsp-request":
        return Response("expected Content-Type application/ocsp-request\n", status_code=415)
    return _ocsp(request, backend, body)


@router.get("/ocsp/{backend}/{encoded:path}")
async def ocsp_get(backend: str, encoded: str, request: Request) -> Response:
    """RFC 6960 Appendix A.1: base64 (then URL-encoded) request in the path."""
    if len(encoded) > _MAX_OCSP_REQUEST:
        return Response("OCSP request too large\n", status_code=414)
    try:
        body = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=False)
    except (binascii.Error, ValueError):
        body = b""
    return _ocsp(request, backend, body)


def _ocsp(request: Request, backend: str, body: bytes) -> Response:
    der = _gateway(request).revocation.ocsp(backend, body)
    return Response(der, media_type="application/ocsp-response")
