"""A fake CA backend for pipeline tests: signs with a throwaway CA, can fail on cue."""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ca_backends.base import BackendRejected, BackendUnavailable, Health
from gateway.model import (
    Decision,
    EnrollmentRequest,
    IdentifierType,
    IssuedCertificate,
    Pending,
    RevocationReason,
)


class FakeBackend:
    """Modes: ``issue`` (default), ``down`` (BackendUnavailable), ``reject``, ``pending``."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.mode = "issue"
        self.calls = 0
        self.polls = 0
        self.revoked: list[tuple[str, RevocationReason]] = []
        self.pending_ready = False
        self._pending: dict[str, tuple[EnrollmentRequest, Decision]] = {}
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name_ = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Fake CA {name}")])
        self.ca = (x509.CertificateBuilder().subject_name(name_).issuer_name(name_)
                   .public_key(self._key.public_key()).serial_number(1)
                   .not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(self._key, hashes.SHA256()))

    def _sign(self, request: EnrollmentRequest, decision: Decision) -> IssuedCertificate:
        serial = x509.random_serial_number()
        assert decision.not_before and decision.not_after
        builder = (x509.CertificateBuilder().subject_name(decision.subject)
                   .issuer_name(self.ca.subject).public_key(request.csr.public_key())
                   .serial_number(serial).not_valid_before(decision.not_before)
                   .not_valid_after(decision.not_after))
        names: list[x509.GeneralName] = []
        for ident in decision.sans:
            if ident.type is IdentifierType.DNS:
                names.append(x509.DNSName(ident.value))
            elif ident.type is IdentifierType.IP:
                names.append(x509.IPAddress(ipaddress.ip_address(ident.value)))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if decision.extended_key_usage:  # as decided: the pipeline checks what comes back
            builder = builder.add_extension(x509.ExtendedKeyUsage(
                [x509.ObjectIdentifier(oid) for oid in decision.extended_key_usage]),
                critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            serial=format(serial, "x"), issuer=self.ca.subject.rfc4514_string(),
            subject=decision.subject.rfc4514_string(), sans=decision.sans,
            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
            der=cert.public_bytes(Encoding.DER), chain=(self.ca.public_bytes(Encoding.DER),),
            backend=self.name)

    async def issue(self, request: EnrollmentRequest, decision: Decision) -> IssuedCertificate | Pending:
        self.calls += 1
        if self.mode == "down":
            raise BackendUnavailable("connection refused")
        if self.mode == "reject":
            raise BackendRejected("template not allowed")
        if self.mode == "pending":
            ref = f"req-{self.calls}"
            self._pending[ref] = (request, decision)
            return Pending(ref, retry_after=1)
        return self._sign(request, decision)

    async def poll(self, backend_ref: str) -> IssuedCertificate | Pending:
        self.polls += 1
        if self.mode == "down":
            raise BackendUnavailable("connection refused")
        if not self.pending_ready:
            return Pending(backend_ref, retry_after=1)
        request, decision = self._pending[backend_ref]
        return self._sign(request, decision)

    async def revoke(self, serial: str, reason: RevocationReason) -> None:
        self.revoked.append((serial, reason))

    async def ca_chain(self) -> list[x509.Certificate]:
        return [self.ca]

    async def crl(self) -> bytes | None:
        return None

    async def health(self) -> Health:
        return Health(self.mode != "down", "down" if self.mode == "down" else "")

    async def close(self) -> None:
        return None
