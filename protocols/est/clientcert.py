"""Validation of EST client certificates (RFC 7030 §3.3.2), done by the application.

The TLS layer accepts any certificate (gateway.tls_client) so that refusals are EST
answers: 403 with a one-line reason for a certificate that is unparseable, outside its
validity, not issued under a configured trust anchor (RFC 5280 §6 path validation by
``cryptography.x509.verification``), or revoked in the gateway's inventory.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ca_backends.base import RevocationSigner
from gateway.errors import ErrorKind, GatewayError
from gateway.runtime import Gateway
from gateway.store import certificates
from gateway.store.certificates import CertificateStatus
from gateway.tls_client import client_cert_anchor_paths

log = logging.getLogger("gatehouse.est")


# RFC 5280 path validation with the Web PKI extension rules, except that a device
# certificate may name its subject only in the DN (no subjectAltName), as many do.
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()
_EE_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)


def _forbidden(reason: str) -> GatewayError:
    return GatewayError(ErrorKind.FORBIDDEN, f"client certificate refused: {reason}")


def _load_pem_file(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("cannot read EST client-certificate anchors",
                    extra={"path": str(path), "error": str(exc)})
        return []


class ClientCertValidator:
    """Validates a client's leaf certificate; completes its chain from known CAs."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        anchors: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        for path in client_cert_anchor_paths(gateway.config, gateway.data_dir):
            for cert in _load_pem_file(path):
                (anchors if cert.issuer == cert.subject else intermediates).append(cert)
        # The gateway's own issuing CAs, so its certificates chain without help.
        for _name, backend in gateway.backends.items():
            if isinstance(backend, RevocationSigner):
                intermediates.extend(issuer.certificate for issuer in backend.issuers())
        self._anchors = anchors
        self._intermediates = intermediates
        self._store = Store(anchors) if anchors else None

    def validate(self, der: bytes, now: dt.datetime) -> x509.Certificate:
        """The parsed certificate if acceptable; raises FORBIDDEN with the reason."""
        try:
            cert = x509.load_der_x509_certificate(der)
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        except ValueError as exc:
            raise _forbidden("it cannot be parsed") from exc
        if now > not_after:
            raise _forbidden(f"it expired on {not_after.isoformat()}")
        if now < not_before:
            raise _forbidden(f"it is not valid before {not_before.isoformat()}")
        if self._store is None:
            raise _forbidden("no client-certificate trust anchors are configured")
        intermediates = [c for c in self._intermediates if c.subject == cert.issuer]
        verifier = (PolicyBuilder().store(self._store).time(now)
                    .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
                    .build_client_verifier())
        try:
            verifier.verify(cert, intermediates)
        except (VerificationError, ValueError, UnsupportedAlgorithm) as exc:
            raise _forbidden("it is not issued by a trusted CA") from exc
        with self._gateway.db.session() as session:
            row = certificates.get(session, format(cert.serial_number, "x"))
            revoked = (row is not None and row.status == CertificateStatus.REVOKED
                       and row.issuer == cert.issuer.rfc4514_string())
        if revoked:
            raise _forbidden("it is revoked")
        return cert
