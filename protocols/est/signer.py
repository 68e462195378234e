"""The gateway's signing identity for EST's CMS answers (Full PKI Responses, the
SignedData around server-generated keys): its TLS server key and certificate, the
identity the client authenticated in the TLS handshake (RFC 7030 §3.3.1)."""

from __future__ import annotations

from typing import Any

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from gateway.config import resolve_path
from gateway.errors import ErrorKind, GatewayError
from gateway.runtime import Gateway
from protocols import cms


class ServerSigner:
    def __init__(self, gateway: Gateway) -> None:
        tls = gateway.config.server.tls
        chain = x509.load_pem_x509_certificates(
            resolve_path(gateway.data_dir, tls.cert).read_bytes())
        self._clock = gateway.clock
        self.cert = chain[0]
        self._cert_der = self.cert.public_bytes(Encoding.DER)
        self.chain = [c.public_bytes(Encoding.DER) for c in chain[1:]]
        self._key: Any = load_pem_private_key(
            resolve_path(gateway.data_dir, tls.key).read_bytes(), None)

    def sign(self, content_type: str, content: bytes, certificates: list[bytes]) -> bytes:
        """ContentInfo(SignedData) over ``content`` (SHA-256, a signingTime attribute),
        with the signer's chain included."""
        signing_time = asn1_cms.CMSAttribute({
            "type": "signing_time",
            "values": [asn1_cms.Time(name="utc_time", value=self._clock.now())]})
        try:
            return cms.sign(content, signer_der=self._cert_der, signer_key=self._key,
                            digest="sha256", attributes=[signing_time],
                            certificates_der=[*certificates, *self.chain],
                            content_type=content_type)
        except cms.CmsUnsupportedAlgorithm as exc:
            raise GatewayError(ErrorKind.INTERNAL,
                               "the response signing key is not EC or RSA") from exc
