"""TLS client certificates for the app: the SSL context and a uvicorn protocol subclass.

uvicorn does not pass the peer certificate to the application.  ``TlsHttpToolsProtocol``
fills the ASGI TLS extension (https://asgi.readthedocs.io/en/latest/specs/tls.html) in
every request scope of a TLS connection:

    scope["extensions"]["tls"] = {
        "server_cert": None,
        "client_cert_chain": [PEM, ...],      # what the client sent (the leaf; see below)
        "client_cert_name": RFC 4514 subject or None,
        "client_cert_error": None,            # verification is the application's job
        "tls_version": 0x0303 | 0x0304,
        "cipher_suite": IANA id or None,
        "client_cert_der": [DER, ...],        # gatehouse extension: no PEM round trip
        "tls_unique": bytes | None,           # RFC 5929 §3, TLS 1.2 only (RFC 7030 §3.5)
    }

The context *requests* a certificate but accepts any (an OpenSSL verify callback that
always succeeds), so an expired, revoked or unknown certificate reaches the application,
which refuses it with a protocol answer (EST 403) instead of a bare TLS alert.  Python's
``ssl`` has no verify-callback API, so the callback is installed with ctypes on the
context's ``SSL_CTX`` (the pointer right after the object header of ``_ssl._SSLContext``),
from the same libssl that ``_ssl`` is linked against.  Only the leaf is available before
Python 3.13 (``getpeercert``); the application completes the chain from its own anchors
and issuing CAs.
"""

from __future__ import annotations

import _ssl
import asyncio
import ctypes
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.errors import ConfigError

_VERIFY_PEER = 0x01
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept_any_impl(_preverify_ok: int, _store: int) -> int:
    return 1


_accept_any = _VerifyCallback(_accept_any_impl)  # kept alive for the process lifetime


_libssl = ctypes.CDLL(_ssl.__file__)
_set_verify = _libssl.SSL_CTX_set_verify
_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
_set_verify.restype = None


def request_client_certificates(context: ssl.SSLContext) -> None:
    """Ask TLS clients for a certificate, accept whatever they send (validated later).

    Must be the last change of ``verify_mode`` on the context: setting it again from
    Python removes the callback.
    """
    context.verify_mode = ssl.CERT_OPTIONAL
    ssl_ctx = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not ssl_ctx:
        raise RuntimeError("cannot reach the SSL_CTX of the TLS context")
    _set_verify(ssl_ctx, _VERIFY_PEER, _accept_any)


def server_context(cert: Path, key: Path, anchors: list[Path]) -> ssl.SSLContext:
    """The HTTPS listener's context: TLS 1.2+, optional client certificates.

    ``anchors`` are loaded so OpenSSL can name acceptable CAs; acceptance itself is the
    application's decision.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    for anchor in anchors:
        if anchor.exists():
            try:
                context.load_verify_locations(cafile=str(anchor))
            except ssl.SSLError as exc:
                raise ConfigError(f"{anchor}: not a PEM certificate file ({exc.reason})") from None
    request_client_certificates(context)
    return context


_CIPHER_IDS: dict[str, int] = {}


def _cipher_id(name: str | None) -> int | None:
    if name is None:
        return None
    if not _CIPHER_IDS:
        for cipher in ssl.create_default_context().get_ciphers():
            _CIPHER_IDS[str(cipher["name"])] = int(cipher["id"]) & 0xFFFF
    return _CIPHER_IDS.get(name)


def tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any] | None:
    """The ASGI TLS extension for one established connection, or None without TLS."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    chain_der = [der] if der else []
    chain_pem: list[str] = []
    name = None
    if der:
        try:
            cert = x509.load_der_x509_certificate(der)
            chain_pem = [cert.public_bytes(Encoding.PEM).decode()]
            name = cert.subject.rfc4514_string()
        except ValueError:
            chain_pem = []  # unparseable: the application sees the DER and refuses it
    version = ssl_object.version()
    cipher = ssl_object.cipher()
    tls_unique = None
    if version == "TLSv1.2":
        tls_unique = ssl_object.get_channel_binding("tls-unique")
    return {
        "server_cert": None,
        "client_cert_chain": chain_pem,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version or ""),
        "cipher_suite": _cipher_id(cipher[0] if cipher else None),
        "client_cert_der": chain_der,
        "tls_unique": tls_unique,
    }


class TlsHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus ``scope["extensions"]["tls"]`` per request."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # asyncio calls this after the handshake, so the peer certificate is known.
        self._tls = tls_extension(transport.get_extra_info("ssl_object"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]


def client_cert_anchor_paths(config: Any, data_dir: Path) -> list[Path]:
    """The CA files whose names the handshake offers as acceptable client-cert issuers.

    Every profile's ``est.client_cert_anchors``, the top-level ``est.client_cert_anchors``
    and each internal CA's ``root.pem`` (so a device picks the certificate it re-enrolls
    with).  Names only: which certificate authenticates on which profile is decided by
    the EST adapter (protocols.est.clientcert), per profile.
    """
    from ca_backends.internal import InternalCaConfig
    from gateway.config import resolve_path

    values = list(config.est.client_cert_anchors)
    for profile in config.profiles.values():
        values += [p for p in profile.est.client_cert_anchors if p not in values]
    paths = [resolve_path(data_dir, p) for p in values]
    return paths + [resolve_path(data_dir, entry.directory) / "root.pem"
                    for entry in config.backends.values() if isinstance(entry, InternalCaConfig)]
