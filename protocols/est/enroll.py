"""EST enrollment operations: simpleenroll, simplereenroll (RFC 7030 §4.2), and the
enrollment steps serverkeygen (§4.4) and fullcmc (§4.3) reuse through call.EnrollPort.

Polling: RFC 7030 §4.2.3 has a client re-POST the same CSR after a 202.  The pipeline is
idempotent on (protocol, transaction id), so the transaction id is a hash of (operation,
profile, principal, CSR DER): the same principal re-posting the same CSR resumes its
request and gets the certificate once it is approved.  Once that certificate is revoked
or expired, the same CSR starts a new request.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AttributeOID

from gateway.errors import ErrorKind, GatewayError
from gateway.model import (
    EnrollmentRequest,
    EnrollmentResult,
    Operation,
    Principal,
    Protocol,
    RequestState,
)
from gateway.runtime import Gateway
from protocols.est.auth import Authenticator, Credentials, cert_principal, unauthorized
from protocols.est.call import Call, Reply, load_csr
from protocols.est.signer import ServerSigner
from protocols.est.wire import CERTS_ONLY, PKCS10, certs_only_b64, decode_body, require_media_type

_MAX_REISSUES = 20  # successive revoked/expired certificates for one CSR


def transaction_id(operation: Operation, profile: str, principal: Principal, csr_der: bytes) -> str:
    digest = hashlib.sha256(b"\0".join((operation.value.encode(), profile.encode(),
                                        principal.kind.value.encode(), principal.id.encode(),
                                        csr_der))).hexdigest()
    return f"est-{digest[:48]}"


def public_key_bytes(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


class Enroller:
    """simpleenroll/simplereenroll, and the EnrollPort serverkeygen and fullcmc use."""

    def __init__(self, gateway: Gateway, auth: Authenticator) -> None:
        self._gateway = gateway
        self._auth = auth
        self._signer: ServerSigner | None = None

    # -- helpers -----------------------------------------------------------------------

    def read_csr(self, call: Call) -> tuple[x509.CertificateSigningRequest, bytes]:
        require_media_type(call.header(b"content-type"), PKCS10)
        der = decode_body(call.body, call.header(b"content-transfer-encoding"),
                          what="PKCS#10 CSR")
        return load_csr(der), der

    @staticmethod
    def check_channel_binding(call: Call, creds: Credentials,
                              csr: x509.CertificateSigningRequest) -> None:
        """RFC 7030 §3.5: challengePassword = base64(tls-unique) of this TLS 1.2 session."""
        if not call.settings.channel_binding:
            return
        if creds.tls_unique is None:
            raise GatewayError(ErrorKind.FORBIDDEN, "channel binding needs a TLS 1.2 "
                               "connection (tls-unique); connect with TLS 1.2")
        try:
            value = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
        except x509.AttributeNotFound:
            raise GatewayError(ErrorKind.FORBIDDEN, "channel binding: the CSR has no "
                               "challengePassword with the tls-unique value") from None
        expected = base64.b64encode(creds.tls_unique)
        got = value if isinstance(value, bytes) else str(value).encode()
        if not hmac.compare_digest(got.strip(), expected):
            raise GatewayError(ErrorKind.FORBIDDEN, "channel binding: challengePassword does "
                               "not match this TLS session's tls-unique")

    async def submit(self, call: Call, operation: Operation, csr: x509.CertificateSigningRequest,
                     csr_der: bytes, principal: Principal, renewal_of: str | None = None,
                     idempotent: bool = True) -> EnrollmentResult:
        tid = transaction_id(operation, call.profile, principal, csr_der) if idempotent else None
        request = EnrollmentRequest(
            protocol=Protocol.EST, operation=operation, profile=call.profile, csr=csr,
            csr_der=csr_der, principal=principal, renewal_of=renewal_of, transaction_id=tid)
        started = self._gateway.clock.now()
        result = await self._gateway.enrollment.submit(request)
        backdate = self._gateway.config.profiles[call.profile].validity.backdate
        fresh_after = started - backdate - dt.timedelta(seconds=1)
        for _ in range(_MAX_REISSUES):
            if tid is None or not self._spent(result, fresh_after):
                break
            # The same CSR again after its certificate was revoked or expired: a new
            # enrollment, not a replay (deterministic, so retries still converge).
            request = replace(request, transaction_id=f"{tid[:40]}-{result.request_id[:23]}")
            result = await self._gateway.enrollment.submit(request)
        return result

    def _spent(self, result: EnrollmentResult, fresh_after: dt.datetime) -> bool:
        """Whether an issued result's certificate is expired or revoked.

        A certificate whose notBefore shows it was signed during this call (the policy
        backdates by ``validity.backdate``) is neither: the inventory is not asked.
        """
        cert = result.certificate
        if cert is None:
            return False
        if cert.not_after <= self._gateway.clock.now():
            return True
        if cert.not_before >= fresh_after:
            return False
        record = self._gateway.inventory.certificate(cert.serial)
        return record is not None and record.revoked

    @staticmethod
    def answer(call: Call, result: EnrollmentResult) -> Reply:
        """200 with the certificate, or 202 + Retry-After (RFC 7030 §4.2.3)."""
        if result.state is RequestState.ISSUED and result.certificate is not None:
            return 200, [(b"content-type", CERTS_ONLY.encode()),
                         (b"content-transfer-encoding", b"base64")], \
                certs_only_b64([result.certificate.der])
        retry = call.settings.retry_after if result.state is RequestState.HELD \
            else (result.retry_after or call.settings.retry_after)
        if result.retrying:
            # The CA is down: 503 + Retry-After (RFC 7030 §4.2.3 allows it; docs/security.md
            # rule 10); re-posting the same CSR resumes the same request.
            text = (f"the CA is temporarily unavailable; request {result.request_id} is "
                    f"retried, retry later\n")
            return 503, [(b"retry-after", str(retry).encode()),
                         (b"content-type", b"text/plain; charset=utf-8")], text.encode()
        text = f"request {result.request_id} is {result.state.value}; retry later\n"
        return 202, [(b"retry-after", str(retry).encode()),
                     (b"content-type", b"text/plain; charset=utf-8")], text.encode()

    # -- operations --------------------------------------------------------------------

    async def simpleenroll(self, call: Call) -> Reply:
        """RFC 7030 §4.2.1: enroll a CSR for an authenticated client."""
        creds = self._auth.credentials(call.scope, call.headers)
        principal = await self._auth.principal(call.profile, call.settings.auth, creds)
        csr, der = self.read_csr(call)
        self.check_channel_binding(call, creds, csr)
        result = await self.submit(call, Operation.ENROLL, csr, der, principal)
        return self.answer(call, result)

    async def simplereenroll(self, call: Call) -> Reply:
        """RFC 7030 §4.2.2: renew or rekey the certificate the client authenticates with."""
        creds = self._auth.credentials(call.scope, call.headers)
        found = self._auth.reenroll_cert(call.profile, call.settings, creds)
        if found is None:
            raise unauthorized("re-enrollment needs the TLS client certificate being renewed")
        cert, issued_here = found
        if call.settings.auth == "both":
            await self._auth.check_password(call.profile, creds)
        csr, der = self.read_csr(call)
        self.check_channel_binding(call, creds, csr)
        principal = cert_principal(cert, call.profile)
        if not issued_here:
            # est.reenroll_from_anchors: an anchor certificate renews nothing here; the
            # request is a first enrollment under est.client_cert_names.
            result = await self.submit(call, Operation.ENROLL, csr, der, principal)
            return self.answer(call, result)
        try:
            same_key = public_key_bytes(csr.public_key()) == public_key_bytes(cert.public_key())
        except ValueError as exc:
            raise GatewayError(ErrorKind.BAD_CSR, "the CSR's public key cannot be read") from exc
        operation = Operation.RENEW if same_key else Operation.REKEY
        # The policy's renewal check compares subject and SANs with the inventory's copy.
        result = await self.submit(call, operation, csr, der, principal,
                                   renewal_of=format(cert.serial_number, "x"))
        return self.answer(call, result)

    @property
    def signer(self) -> ServerSigner:
        """Loaded on first use: only fullcmc and encrypted serverkeygen sign."""
        if self._signer is None:
            self._signer = ServerSigner(self._gateway)
        return self._signer

    @property
    def auth(self) -> Authenticator:
        return self._auth

    @property
    def gateway(self) -> Gateway:
        return self._gateway
