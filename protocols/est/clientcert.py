"""Validation of EST client certificates (RFC 7030 §3.3.2), done by the application,
per profile.

The TLS layer accepts any certificate (gateway.tls_client) so that refusals are EST
answers: 403 with a one-line reason for a certificate that is unparseable, outside its
validity, not issued under the profile's trust anchors (RFC 5280 §6 path validation by
``cryptography.x509.verification``), not issued by the gateway under this profile (for
re-enrollment), or revoked in the gateway's inventory.
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

from gateway.config import resolve_path
from gateway.errors import ErrorKind, GatewayError
from gateway.runtime import Gateway

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


class _Anchors:
    """One profile's trust anchors, and the CA certificates that complete chains to them."""

    def __init__(self, certs: list[x509.Certificate]) -> None:
        self.roots = [c for c in certs if c.issuer == c.subject]
        self.intermediates = [c for c in certs if c.issuer != c.subject]
        self.store = Store(self.roots) if self.roots else None


class ClientCertValidator:
    """Validates a client's leaf certificate for one profile (RFC 7030 §3.3.2).

    Two questions, asked separately because they grant different things:

    * ``from_anchors``: is it issued under the profile's ``est.client_cert_anchors``
      (path validation)?  That authenticates simpleenroll, serverkeygen and fullcmc.
    * ``issued_under``: is it a current, unrevoked certificate this gateway issued under
      this very profile (the inventory holds it byte for byte)?  That authenticates
      simplereenroll of that certificate, and nothing else.
    """

    def __init__(self, gateway: Gateway) -> None:
        self._inventory = gateway.inventory
        # The gateway's own issuing CAs complete chains only when a profile lists the
        # gateway's root as an anchor; they are never anchors themselves.
        self._issuing: list[x509.Certificate] = gateway.ca.issuing_certificates()
        self._anchors: dict[str, _Anchors] = {}
        for name, profile in gateway.config.profiles.items():
            certs: list[x509.Certificate] = []
            for value in profile.est.client_cert_anchors:
                certs.extend(_load_pem_file(resolve_path(gateway.data_dir, value)))
            self._anchors[name] = _Anchors(certs)

    @staticmethod
    def parse(der: bytes, now: dt.datetime) -> x509.Certificate:
        """The certificate, if it parses and ``now`` is within its validity."""
        try:
            cert = x509.load_der_x509_certificate(der)
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        except ValueError as exc:
            raise _forbidden("it cannot be parsed") from exc
        if now > not_after:
            raise _forbidden(f"it expired on {not_after.isoformat()}")
        if now < not_before:
            raise _forbidden(f"it is not valid before {not_before.isoformat()}")
        return cert

    def from_anchors(self, profile: str, der: bytes, now: dt.datetime) -> x509.Certificate:
        """The certificate if issued under ``profile``'s anchors; raises FORBIDDEN."""
        cert = self.parse(der, now)
        anchors = self._anchors.get(profile)
        if anchors is None or anchors.store is None:
            raise _forbidden(f"profile {profile!r} trusts no client-certificate issuer "
                             "(est.client_cert_anchors)")
        intermediates = [c for c in anchors.intermediates + self._issuing
                         if c.subject == cert.issuer]
        verifier = (PolicyBuilder().store(anchors.store).time(now)
                    .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
                    .build_client_verifier())
        try:
            verifier.verify(cert, intermediates)
        except (VerificationError, ValueError, UnsupportedAlgorithm) as exc:
            raise _forbidden("it is not issued by a trusted CA of this profile") from exc
        record = self._inventory.certificate(format(cert.serial_number, "x"))
        if record is not None and record.revoked \
                and record.issuer == cert.issuer.rfc4514_string():
            raise _forbidden("it is revoked")
        return cert

    def issued_under(self, profile: str, der: bytes, now: dt.datetime) -> x509.Certificate:
        """The certificate if the gateway issued exactly it under ``profile``, and it is
        neither expired nor revoked; raises FORBIDDEN with the reason."""
        cert = self.parse(der, now)
        record = self._inventory.exact(format(cert.serial_number, "x"), der)
        if record is None:
            raise _forbidden("it is not a certificate this gateway issued")
        if record.profile != profile:
            raise _forbidden(f"it was not issued under profile {profile!r}")
        if record.revoked:
            raise _forbidden("it is revoked")
        return cert
