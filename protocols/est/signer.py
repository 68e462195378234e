"""The gateway's signing identity for EST's CMS answers (Full PKI Responses, the
SignedData around server-generated keys): its TLS server key and certificate, the
identity the client authenticated in the TLS handshake (RFC 7030 §3.3.1)."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from gateway.config import resolve_path
from gateway.runtime import Gateway
from protocols.est.cmssig import sign


class ServerSigner:
    def __init__(self, gateway: Gateway) -> None:
        tls = gateway.config.server.tls
        chain = x509.load_pem_x509_certificates(
            resolve_path(gateway.data_dir, tls.cert).read_bytes())
        self._clock = gateway.clock
        self.cert = chain[0]
        self.chain = [c.public_bytes(Encoding.DER) for c in chain[1:]]
        self._key: Any = load_pem_private_key(
            resolve_path(gateway.data_dir, tls.key).read_bytes(), None)

    def sign(self, content_type: str, content: bytes, certificates: list[bytes]) -> bytes:
        """ContentInfo(SignedData) over ``content``, with the signer's chain included."""
        return sign(content_type, content, self.cert, self._key,
                    [*certificates, *self.chain], self._clock.now())
