"""TLS for the HTTPS listener: the server context and a uvicorn protocol that terminates TLS.

EST refusals of a client certificate must be EST answers (403 with a reason), not TLS
alerts, so the handshake *requests* a certificate and accepts whichever one the client
proves it holds (CertificateVerify is still checked by OpenSSL); trust is decided later,
per profile, by the application (protocols.est.clientcert).  Python's ``ssl`` cannot do
that (no verify-callback API: with ``CERT_OPTIONAL`` any verification error aborts the
handshake), so this listener's TLS is pyOpenSSL, whose ``Context.set_verify`` takes a
callback, driven through memory BIOs by ``TlsHttpToolsProtocol``: uvicorn's httptools
protocol, receiving the raw TCP stream, doing the handshake, then handing uvicorn a
transport of plaintext.  Only public pyOpenSSL and asyncio APIs are used; the uvicorn
hooks it relies on are checked by tests/unit/gateway/test_tls_client.py, and uvicorn
and pyOpenSSL are pinned in pyproject.toml.

Every request scope of the connection carries the ASGI TLS extension
(https://asgi.readthedocs.io/en/latest/specs/tls.html):

    scope["extensions"]["tls"] = {
        "server_cert": None,
        "client_cert_chain": [PEM, ...],      # the leaf, then what the client sent with it
        "client_cert_name": RFC 4514 subject or None,
        "client_cert_error": None,            # verification is the application's job
        "tls_version": 0x0303 | 0x0304,
        "cipher_suite": IANA id or None,
        "client_cert_der": [DER, ...],        # gatehouse extension: no PEM round trip
        "tls_unique": bytes | None,           # RFC 5929 §3, TLS 1.2 only (RFC 7030 §3.5)
    }

Session resumption is off, so every TLS 1.2 handshake is a full one and ``tls-unique`` is
the client's Finished message (RFC 5929 §3.1); it also rules out the triple-handshake
attack on ``tls-unique`` across resumed sessions (RFC 7627 §1).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.errors import ConfigError

log = logging.getLogger("gatehouse.tls")

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# CPython's default for server contexts (Modules/_ssl.c PY_SSL_DEFAULT_CIPHER_STRING):
# the listener offers what it offered when it used ``ssl``.
_CIPHERS = (b"@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:"
            b"!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM")
# A client that has not finished its handshake after this long is dropped (a stalled
# handshake holds buffers and a socket; asyncio's default of 60 s invites slowloris).
HANDSHAKE_TIMEOUT = 20.0  # seconds
_READ_SIZE = 65536


def _accept_any(_conn: SSL.Connection, _cert: crypto.X509, _errno: int, _depth: int,
                _ok: int) -> bool:
    """Let every certificate through the handshake: the application refuses it with an
    EST answer (the client has still proven possession of its key)."""
    return True


def server_context(cert: Path, key: Path, anchors: list[Path]) -> SSL.Context:
    """The HTTPS listener's context: TLS 1.2+, optional client certificates.

    ``anchors`` are read so that an unreadable anchor file stops start-up; acceptance of
    a client certificate is the application's decision.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                        | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_cipher_list(_CIPHERS)
    try:
        context.use_certificate_chain_file(str(cert))
        context.use_privatekey_file(str(key))
        context.check_privatekey()
    except SSL.Error as exc:
        raise ConfigError(f"{cert}, {key}: not a usable TLS certificate and key ({exc})") from None
    for anchor in anchors:
        if anchor.exists():
            try:
                context.load_verify_locations(str(anchor))
                # load_verify_locations does not fill the CertificateRequest's list of
                # acceptable issuers: name each one, so a client holding several
                # identities (RFC 5246 §7.4.4) picks one this gateway may accept.
                for certificate in x509.load_pem_x509_certificates(anchor.read_bytes()):
                    context.add_client_ca(certificate)
            except (SSL.Error, ValueError, OSError):
                raise ConfigError(f"{anchor}: not a PEM certificate file") from None
    context.set_verify(SSL.VERIFY_PEER, _accept_any)
    return context


_CIPHER_IDS: dict[str, int] = {}


def _iana_cipher(name: str | None) -> int | None:
    if name is None:
        return None
    if not _CIPHER_IDS:
        for cipher in ssl.create_default_context().get_ciphers():
            _CIPHER_IDS[str(cipher["name"])] = int(cipher["id"]) & 0xFFFF
    return _CIPHER_IDS.get(name)


def _peer_chain_der(conn: SSL.Connection) -> list[bytes]:
    """The client's certificate first, then the other certificates it sent (on the
    server side OpenSSL's peer chain may or may not repeat the leaf)."""
    leaf = conn.get_peer_certificate()
    if leaf is None:
        return []
    chain = [crypto.dump_certificate(crypto.FILETYPE_ASN1, leaf)]
    for cert in conn.get_peer_cert_chain() or []:
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
        if der not in chain:
            chain.append(der)
    return chain


def tls_extension(conn: SSL.Connection) -> dict[str, Any]:
    """The ASGI TLS extension for one connection whose handshake is complete."""
    chain_der = _peer_chain_der(conn)
    chain_pem: list[str] = []
    name = None
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
        chain_pem = [cert.public_bytes(Encoding.PEM).decode() for cert in certs]
        name = certs[0].subject.rfc4514_string() if certs else None
    except ValueError:
        chain_pem = []  # unparseable: the application sees the DER and refuses it
    version = conn.get_protocol_version_name()
    # Resumption is off, so a TLS 1.2 handshake is full and its first Finished is the
    # client's (RFC 5929 §3.1).
    tls_unique = conn.get_peer_finished() if version == "TLSv1.2" else None
    return {
        "server_cert": None,
        "client_cert_chain": chain_pem,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version),
        "cipher_suite": _iana_cipher(conn.get_cipher_name()),
        "client_cert_der": chain_der,
        "tls_unique": tls_unique,
    }


class _PlaintextTransport(asyncio.Transport):
    """What uvicorn writes to and reads from: plaintext over the TLS connection of
    ``owner``; flow control and addresses are the TCP transport's."""

    def __init__(self, owner: TlsHttpToolsProtocol, raw: asyncio.Transport) -> None:
        super().__init__()
        self._owner = owner
        self._raw = raw

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":  # uvicorn.protocols.utils.is_ssl: the scheme is https
            return self._owner.tls_context
        if name == "ssl_object":
            return self._owner.tls_connection
        return self._raw.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._owner.send_plaintext(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self._owner.tls_closing or self._raw.is_closing()

    def close(self) -> None:
        self._owner.close_tls()

    def abort(self) -> None:
        self._raw.abort()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()


class TlsHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol behind a pyOpenSSL server handshake, plus
    ``scope["extensions"]["tls"]`` per request.

    uvicorn gives it the TCP transport; uvicorn's own ``connection_made`` runs only
    once the handshake is complete, with a transport of plaintext.  Use
    :func:`tls_protocol` to bind a context.
    """

    tls_context: ClassVar[SSL.Context]
    tls_connection: SSL.Connection | None = None
    tls_closing = False
    _raw: asyncio.Transport | None = None
    _established = False
    _lost = False
    _tls: dict[str, Any] | None = None
    _handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self._raw = transport
        self.tls_connection = SSL.Connection(self.tls_context, None)
        self.tls_connection.set_accept_state()
        self._handshake_timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_expired)

    def _handshake_expired(self) -> None:
        if not self._established and self._raw is not None:
            self._raw.abort()

    def data_received(self, data: bytes) -> None:
        conn, raw = self.tls_connection, self._raw
        if conn is None or raw is None or self.tls_closing:
            return
        try:
            conn.bio_write(data)
        except SSL.Error as exc:
            log.debug("TLS input refused", extra={"error": str(exc)})
            raw.abort()
            return
        if not self._established and not self._handshake(conn, raw):
            return
        plaintext: list[bytes] = []
        peer_closed = False
        while True:
            try:
                plaintext.append(conn.recv(_READ_SIZE))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify
                peer_closed = True
                break
            except SSL.Error as exc:
                log.debug("TLS record error", extra={"error": str(exc)})
                self._flush()
                raw.abort()
                return
        self._flush()
        if plaintext:
            super().data_received(b"".join(plaintext))
        if peer_closed:
            self.close_tls()

    def _handshake(self, conn: SSL.Connection, raw: asyncio.Transport) -> bool:
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return False
        except SSL.Error as exc:  # the alert OpenSSL wrote goes out, then the socket closes
            log.debug("TLS handshake failed", extra={"error": str(exc)})
            self._flush()
            self.tls_closing = True
            raw.close()
            return False
        self._established = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self._flush()
        self._tls = tls_extension(conn)
        super().connection_made(_PlaintextTransport(self, raw))
        return True

    def _flush(self) -> None:
        conn, raw = self.tls_connection, self._raw
        if conn is None or raw is None:
            return
        while True:
            try:
                out = conn.bio_read(_READ_SIZE)
            except SSL.WantReadError:
                return
            if not out:
                return
            if not self._lost:
                raw.write(out)

    def send_plaintext(self, data: bytes) -> None:
        if self.tls_closing or self._lost or self.tls_connection is None or not data:
            return
        try:
            self.tls_connection.sendall(data)
        except SSL.Error as exc:  # the TLS connection failed earlier: nothing can be sent
            log.debug("TLS write failed", extra={"error": str(exc)})
            self.tls_closing = True
            if self._raw is not None:
                self._raw.abort()
            return
        self._flush()

    def close_tls(self) -> None:
        """Send close_notify, then close the TCP connection once its buffer is out."""
        if self.tls_closing:
            return
        self.tls_closing = True
        if self.tls_connection is not None and self._established and not self._lost:
            try:
                self.tls_connection.shutdown()
            except SSL.Error:
                pass  # the peer is gone or the connection broken: closing anyway
            self._flush()
        if self._raw is not None:
            self._raw.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.tls_closing = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        if self._established:
            super().connection_lost(exc)

    def pause_writing(self) -> None:
        if self._established:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self._established:
            super().resume_writing()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]


def tls_protocol(context: SSL.Context) -> type[TlsHttpToolsProtocol]:
    """A ``TlsHttpToolsProtocol`` class bound to ``context``, for ``uvicorn.Config(http=...)``."""
    return type("BoundTlsHttpToolsProtocol", (TlsHttpToolsProtocol,), {"tls_context": context})


def client_cert_anchor_paths(config: Any, data_dir: Path) -> list[Path]:
    """The CA files whose names the handshake offers as acceptable client-cert issuers.

    Every profile's ``est.client_cert_anchors``, the top-level ``est.client_cert_anchors``
    and each internal CA's ``root.pem`` (so a device picks the certificate it re-enrolls
    with).  Names only: which certificate authenticates on which profile is decided by
    the EST adapter (protocols.est.clientcert), per profile.
    """
    from gateway.config import resolve_path

    values = list(config.est.client_cert_anchors)
    for profile in config.profiles.values():
        values += [p for p in profile.est.client_cert_anchors if p not in values]
    paths = [resolve_path(data_dir, p) for p in values]
    # By type name: the HTTP edge reads configuration, it does not import a backend.
    return paths + [resolve_path(data_dir, entry.directory) / "root.pem"
                    for entry in config.backends.values() if entry.type == "internal"]
