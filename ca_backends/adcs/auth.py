"""Authenticating to IIS the way certsrv expects: Basic, NTLM/Negotiate, client certificate.

NTLM and Negotiate (RFC 4559) authenticate one keep-alive connection: the flow answers
the 401 challenge on the same connection, so the bridge's HTTP client for these schemes
holds a single connection.  Channel binding (Extended Protection for Authentication,
which current Windows Server turns on for AD CS) uses ``tls-server-end-point``
(RFC 5929 §4.1): a hash of the server's TLS certificate the client actually received.
pyspnego does the NTLM/SPNEGO messages (its own MD4, so OpenSSL 3 is no obstacle).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import ssl
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import httpx
import spnego
import spnego.channel_bindings
import spnego.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ca_backends.adcs.config import BasicAuth, NegotiateAuth, NtlmAuth
from ca_backends.base import BackendUnavailable


class AdcsAuthError(BackendUnavailable):
    """IIS refused the gateway's credentials: the operator must fix them; requests wait."""


def read_password(config: BasicAuth | NtlmAuth | NegotiateAuth, data_dir: Path,
                  environ: Mapping[str, str] | None = None) -> str:
    if config.password_file:
        path = Path(config.password_file)
        path = path if path.is_absolute() else data_dir / path
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise AdcsAuthError(f"cannot read the ADCS password file {path}: {exc.strerror}") from exc
    else:
        value = (environ if environ is not None else os.environ).get(config.password_env or "", "")
    if not value:
        raise AdcsAuthError(f"no ADCS password ({config.password_file or '$' + str(config.password_env)})")
    return value


def tls_server_end_point(certificate_der: bytes) -> bytes:
    """RFC 5929 §4.1: the certificate's hash, with MD5/SHA-1 (and unknown) raised to SHA-256."""
    try:
        algorithm = x509.load_der_x509_certificate(certificate_der).signature_hash_algorithm
    except (ValueError, x509.UnsupportedGeneralNameType):
        algorithm = None
    if not isinstance(algorithm, hashes.SHA384 | hashes.SHA512):
        return hashlib.sha256(certificate_der).digest()
    return hashlib.new(algorithm.name, certificate_der).digest()


def _peer_certificate(response: httpx.Response) -> bytes | None:
    stream: Any = response.extensions.get("network_stream")
    if stream is None:
        return None
    ssl_object = stream.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der or None


class SpnegoAuth(httpx.Auth):
    """NTLM or Negotiate over HTTP (RFC 4559), with channel bindings from the TLS session."""

    requires_response_body = True  # drain the 401 so the connection is reused

    def __init__(self, username: str, password: str, *, protocol: str, service: str = "HTTP") -> None:
        self._username = username
        self._password = password
        self._protocol = protocol  # "ntlm" or "negotiate"
        self._scheme = "NTLM" if protocol == "ntlm" else "Negotiate"
        self._service = service

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        if response.status_code != 401 or self._offered(response) is None:
            return  # the connection is already authenticated, or another failure
        peer = _peer_certificate(response)
        bindings = None
        if peer is not None:
            bindings = spnego.channel_bindings.GssChannelBindings(
                application_data=b"tls-server-end-point:" + tls_server_end_point(peer))
        context = spnego.client(self._username, self._password, hostname=request.url.host,
                                service=self._service, protocol=self._protocol,
                                channel_bindings=bindings)
        token: bytes | None = None
        for _ in range(4):  # NTLM needs two legs, Kerberos one or two
            try:
                out = context.step(token)
            except spnego.exceptions.SpnegoError as exc:
                raise AdcsAuthError(f"{self._scheme} authentication failed: {exc}") from exc
            if out is None:
                return
            request.headers["Authorization"] = f"{self._scheme} {base64.b64encode(out).decode()}"
            response = yield request
            if response.status_code != 401:
                return
            token = self._offered(response)
            if not token:
                return  # credentials refused: the caller sees the 401
        return

    def _offered(self, response: httpx.Response) -> bytes | None:
        """The server's token for our scheme (b"" when it only offers the scheme)."""
        for value in response.headers.get_list("WWW-Authenticate"):
            scheme, _, data = value.strip().partition(" ")
            if scheme.lower() == self._scheme.lower():
                try:
                    return base64.b64decode(data.strip()) if data.strip() else b""
                except binascii.Error:
                    return b""
        return None


__all__ = ["AdcsAuthError", "SpnegoAuth", "read_password", "tls_server_end_point"]
