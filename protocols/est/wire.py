"""EST message encodings: base64 bodies, media types, multipart answers (CMS itself is
protocols.cms).

RFC 7030 §4 (as clarified by RFC 8951 §3): request and response bodies are base64 of
DER, with or without line breaks, with or without ``Content-Transfer-Encoding: base64``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable

from gateway.errors import ErrorKind, GatewayError
from protocols.cms import certs_only

PKCS10 = "application/pkcs10"
PKCS7 = "application/pkcs7-mime"
CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
CMC_RESPONSE = "application/pkcs7-mime; smime-type=CMC-response"
SERVER_KEY = "application/pkcs7-mime; smime-type=server-generated-key"
PKCS8 = "application/pkcs8"
CSRATTRS = "application/csrattrs"

_ALLOWED_TRANSFER = {"", "base64"}


class UnsupportedMediaType(Exception):
    """HTTP 415: a transport-level refusal that has no domain error kind."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def media_type(value: str | None) -> str:
    """The lower-case media type of a Content-Type header, without parameters."""
    return (value or "").split(";", 1)[0].strip().lower()


def require_media_type(value: str | None, *expected: str) -> None:
    """415 unless the request's Content-Type is one of ``expected`` (RFC 7030 §4.2.1)."""
    if media_type(value) not in expected:
        got = media_type(value) or "none"
        raise UnsupportedMediaType(f"Content-Type must be {' or '.join(expected)}, not {got}")


def decode_body(body: bytes, transfer_encoding: str | None, *, what: str) -> bytes:
    """Base64 (any line breaks) → DER; raises MALFORMED with a one-line reason."""
    if (transfer_encoding or "").strip().lower() not in _ALLOWED_TRANSFER:
        raise GatewayError(ErrorKind.MALFORMED,
                           f"Content-Transfer-Encoding {transfer_encoding!r} is not supported")
    compact = b"".join(body.split())
    if not compact:
        raise GatewayError(ErrorKind.MALFORMED, f"empty body: expected a base64 {what}")
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GatewayError(ErrorKind.MALFORMED, f"the body is not valid base64 ({what})") from exc
    if der[:1] != b"\x30":
        raise GatewayError(ErrorKind.MALFORMED, f"the decoded body is not a DER {what}")
    return der


def b64(der: bytes) -> bytes:
    """Base64 with 64-character lines (what OpenSSL and most clients write)."""
    text = base64.b64encode(der)
    return b"\n".join(text[i:i + 64] for i in range(0, len(text), 64)) + b"\n"


def certs_only_b64(ders: Iterable[bytes]) -> bytes:
    """The certs-only answer (RFC 7030 §4.1.3), base64: protocols.cms.certs_only's DER."""
    return b64(certs_only(ders))


def multipart(parts: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """multipart/mixed (RFC 2046 §5.1) of base64 parts; returns (Content-Type, body)."""
    boundary = "est-" + secrets.token_hex(12)
    out = []
    for content_type, der in parts:
        out.append(f"--{boundary}\r\nContent-Type: {content_type}\r\n"
                   "Content-Transfer-Encoding: base64\r\n\r\n".encode())
        out.append(b64(der).replace(b"\n", b"\r\n"))
    out.append(f"--{boundary}--\r\n".encode())
    return f"multipart/mixed; boundary={boundary}", b"".join(out)
