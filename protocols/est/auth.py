"""Who is asking: HTTP Basic (RFC 7617) and TLS client certificates (RFC 7030 §3.2.3, §3.3.2).

A profile's ``est.auth`` says what is required: ``any`` (either), ``password``,
``client-cert`` or ``both``.  Client certificates are trusted per profile
(protocols.est.clientcert): the profile's anchors for enrollment, the profile's own
certificates for re-enrollment.  The client certificate comes from the TLS connection
(``scope["extensions"]["tls"]``, filled by gateway.tls_client) or, only when the TCP peer
is a configured trusted proxy, from the proxy's header (URL-encoded PEM).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import ErrorKind, GatewayError
from gateway.model import Principal, PrincipalKind
from gateway.policy import certificate_names
from gateway.protocol_settings.est import EstProfileSettings
from gateway.runtime import Gateway
from protocols.est.clientcert import ClientCertValidator

Headers = dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client presented, before it is checked."""

    basic: tuple[str, str] | None
    client_cert_der: bytes | None
    tls_unique: bytes | None
    tls_version: int | None


def unauthorized(detail: str) -> GatewayError:
    return GatewayError(ErrorKind.UNAUTHORIZED, detail)


class Authenticator:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        settings = gateway.config.est
        self._users = gateway.users
        self._certs = ClientCertValidator(gateway)
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self._proxy_header = settings.client_cert_header.encode()

    # -- extraction --------------------------------------------------------------------

    def credentials(self, scope: dict[str, Any], headers: Headers) -> Credentials:
        tls = (scope.get("extensions") or {}).get("tls") or {}
        cert_der = None
        chain = tls.get("client_cert_der") or []
        if chain:
            cert_der = chain[0]
        if self._proxies and self._from_trusted_proxy(scope):
            forwarded = headers.get(self._proxy_header)
            if forwarded:
                cert_der = _pem_header_to_der(forwarded)
        return Credentials(_basic(headers.get(b"authorization")), cert_der,
                           tls.get("tls_unique"), tls.get("tls_version"))

    def _from_trusted_proxy(self, scope: dict[str, Any]) -> bool:
        client = scope.get("client")
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    # -- checks ------------------------------------------------------------------------

    def client_cert(self, profile: str, creds: Credentials) -> x509.Certificate | None:
        """The TLS client certificate as a key holder on ``profile`` (fullcmc signer,
        serverkeygen recipient): issued by the gateway under ``profile`` or under the
        profile's anchors.  None when none was presented; raises FORBIDDEN otherwise."""
        if creds.client_cert_der is None:
            return None
        now = self._gateway.clock.now()
        try:
            return self._certs.issued_under(profile, creds.client_cert_der, now)
        except GatewayError:
            return self._certs.from_anchors(profile, creds.client_cert_der, now)

    def issued_cert(self, profile: str, creds: Credentials) -> x509.Certificate | None:
        """The TLS client certificate if the gateway issued it under ``profile`` (current,
        unrevoked); None when none was presented; raises FORBIDDEN otherwise."""
        if creds.client_cert_der is None:
            return None
        return self._certs.issued_under(profile, creds.client_cert_der,
                                        self._gateway.clock.now())

    def reenroll_cert(self, profile: str, settings: EstProfileSettings,
                      creds: Credentials) -> tuple[x509.Certificate, bool] | None:
        """The certificate a simplereenroll renews (RFC 7030 §4.2.2), and whether the
        gateway issued it under ``profile`` (else: an anchor certificate, accepted only
        with ``est.reenroll_from_anchors``).  None when none was presented."""
        if creds.client_cert_der is None:
            return None
        now = self._gateway.clock.now()
        try:
            return self._certs.issued_under(profile, creds.client_cert_der, now), True
        except GatewayError:
            if not settings.reenroll_from_anchors:
                raise
            return self._certs.from_anchors(profile, creds.client_cert_der, now), False

    async def principal(self, profile: str, mode: str, creds: Credentials) -> Principal:
        """Authenticate for an enrollment on ``profile`` under the EST auth ``mode``.

        A client certificate authenticates only if issued under the profile's own
        ``est.client_cert_anchors``; with ``any`` and HTTP Basic credentials present,
        the password decides and the certificate is not consulted.
        """
        cert = None
        wants_cert = mode in ("client-cert", "both") or (mode == "any" and creds.basic is None)
        if wants_cert and creds.client_cert_der is not None:
            cert = self._certs.from_anchors(profile, creds.client_cert_der,
                                            self._gateway.clock.now())
        user = None
        if creds.basic is not None and mode != "client-cert":
            user = await self._users.verify_async(profile, *creds.basic)
            if user is None:
                raise unauthorized("wrong user name or password")
        if mode == "both" and (cert is None or user is None):
            raise unauthorized("this profile needs HTTP Basic credentials and a client "
                               "certificate")
        if user is not None:
            attributes = {"profile": profile}
            if cert is not None:
                attributes["client_cert_serial"] = format(cert.serial_number, "x")
            return Principal(PrincipalKind.PASSWORD, user.name, attributes)
        if cert is not None:
            return cert_principal(cert, profile)
        wanted = {"password": "HTTP Basic credentials",
                  "client-cert": "a TLS client certificate"}.get(
                      mode, "HTTP Basic credentials or a TLS client certificate")
        raise unauthorized(f"authentication required: {wanted}")

    async def check_password(self, profile: str, creds: Credentials) -> None:
        """For ``both`` on re-enrollment: the Basic credentials must be right too."""
        if creds.basic is None or await self._users.verify_async(profile, *creds.basic) is None:
            raise unauthorized("this profile needs HTTP Basic credentials as well")


def cert_principal(cert: x509.Certificate, profile: str = "") -> Principal:
    """The principal of a certificate-authenticated client; ``cert_names`` (its CN and
    SAN values, JSON) is what the policy's ``est.client_cert_names`` rule compares.

    Its id is the certificate's SHA-256 fingerprint, not its serial: serials are unique
    only per issuer, and two manufacturer anchors on one profile may both issue serial 1
    (the id decides holder revocation and the rate limit)."""
    serial = format(cert.serial_number, "x")
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    return Principal(PrincipalKind.CLIENT_CERT, fingerprint, {
        "serial": serial,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sha256": fingerprint,
        "profile": profile,
        "cert_names": json.dumps(certificate_names(cert)),
    })


def _basic(value: bytes | None) -> tuple[str, str] | None:
    if not value:
        return None
    scheme, _, encoded = value.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise unauthorized("malformed HTTP Basic credentials") from exc
    name, sep, password = decoded.partition(":")
    if not sep:
        raise unauthorized("malformed HTTP Basic credentials")
    return name, password


def _pem_header_to_der(value: bytes) -> bytes:
    text = urllib.parse.unquote(value.decode("latin-1"))
    try:
        return x509.load_pem_x509_certificate(text.encode()).public_bytes(Encoding.DER)
    except ValueError as exc:
        raise GatewayError(ErrorKind.FORBIDDEN,
                           "client certificate refused: the proxy header is not a PEM "
                           "certificate") from exc
