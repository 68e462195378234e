"""PKIOperation (RFC 8894 §3.3): PKCSReq, RenewalReq, CertPoll, GetCert and GetCRL.

Each message is decoded, authenticated (challenge password for PKCSReq, the current
certificate for RenewalReq), turned into an ``EnrollmentRequest`` and answered with a
CertRep.  Polling rides on the pipeline's idempotency: the pipeline transaction id is
derived from the SCEP transactionID (see ``transaction_key``), so a CertPoll, or a
PKCSReq sent again, lands on the request the first message created.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AttributeOID

from gateway.auth import challenges
from gateway.config import ProfileConfig
from gateway.errors import ErrorKind, GatewayError, client_detail
from gateway.model import (
    EnrollmentRequest,
    EnrollmentResult,
    Operation,
    Principal,
    PrincipalKind,
    Protocol,
    RequestState,
)
from gateway.pem import load_csr_der
from gateway.protocol_settings.scep import ChallengeMode
from gateway.ra import RaIdentity
from gateway.runtime import Gateway
from gateway.services.inventory import CertificateRecord
from protocols.cms import CmsUnsupportedAlgorithm
from protocols.scep import certrep, message, webhook
from protocols.scep.certrep import ReplyAlgorithms
from protocols.scep.errors import ScepFailure, fail_info_for
from protocols.scep.message import Header, PkiMessage
from protocols.scep.vocabulary import (
    LEGACY_CIPHERS,
    LEGACY_DIGESTS,
    MODERN_CIPHERS,
    MODERN_DIGESTS,
    FailInfo,
    MessageType,
)

_DER = Encoding.DER


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One SCEP profile as served: its name, rules and RA."""

    profile_name: str
    profile: ProfileConfig
    ra: RaIdentity

    @property
    def allowed_digests(self) -> frozenset[str]:
        s = self.profile.scep
        legacy = s.legacy_algorithms or s.accept_legacy_requests
        return MODERN_DIGESTS | LEGACY_DIGESTS if legacy else MODERN_DIGESTS

    @property
    def allowed_ciphers(self) -> frozenset[str]:
        s = self.profile.scep
        legacy = s.legacy_algorithms or s.accept_legacy_requests
        return MODERN_CIPHERS | LEGACY_CIPHERS if legacy else MODERN_CIPHERS

    def reply_algorithms(self, digest: str | None, cipher: str | None) -> ReplyAlgorithms:
        """The request's own algorithms when strong (or legacy is on); else SHA-256/AES."""
        legacy = self.profile.scep.legacy_algorithms
        reply_digest = digest if digest in MODERN_DIGESTS or (legacy and digest) else "sha256"
        reply_cipher = cipher if cipher in MODERN_CIPHERS or (legacy and cipher) else "aes256_cbc"
        return ReplyAlgorithms(reply_digest or "sha256", reply_cipher or "aes256_cbc")


def transaction_key(profile: str, transaction_id: str, subject_der: bytes,
                    renewal_of: str | None) -> str:
    """The pipeline transaction id of a SCEP transaction.

    Clients derive transactionID from the public key (RFC 8894 §3.2.1.1 suggests it), so
    a renewal with the same key, or a retry with a corrected subject, repeats it.  The
    key therefore also binds the profile, the requested subject (CertPoll carries it in
    IssuerAndSubject) and the certificate being renewed (CertPoll is signed by it).
    """
    material = "\x00".join([profile, transaction_id, subject_der.hex(), renewal_of or "new"])
    digest = hashlib.sha256(material.encode()).hexdigest()[:24]
    return f"{transaction_id[:96]}#{digest}"


class PkiOperations:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def handle(self, endpoint: Endpoint, body: bytes) -> bytes:
        """A CertRep for any readable pkiMessage; message.Unreadable otherwise."""
        header, signed = message.read_header(body)
        try:
            pki = message.verify(header, signed, allowed_digests=endpoint.allowed_digests)
        except ScepFailure as failure:
            return certrep.failure(header, endpoint.ra, endpoint.reply_algorithms(None, None),
                                   failure.fail_info, failure.detail)
        algorithms = endpoint.reply_algorithms(pki.digest, None)
        try:
            self._check_time(endpoint, pki)
            opened = message.open_envelope(pki, ra_der=endpoint.ra.der, ra_key=endpoint.ra.key,
                                           allowed_ciphers=endpoint.allowed_ciphers)
            algorithms = endpoint.reply_algorithms(pki.digest, opened.cipher)
            return await self._dispatch(endpoint, pki, opened.content, algorithms)
        except ScepFailure as failure:
            return certrep.failure(header, endpoint.ra, algorithms, failure.fail_info,
                                   failure.detail)
        except GatewayError as error:
            return self._answer_error(endpoint, header, algorithms, error)

    def _check_time(self, endpoint: Endpoint, pki: PkiMessage) -> None:
        skew = endpoint.profile.scep.max_clock_skew_seconds
        if skew is None or pki.signing_time is None:
            return
        if abs((pki.signing_time - self._gateway.clock.now()).total_seconds()) > skew:
            raise ScepFailure(FailInfo.BAD_TIME, "signingTime is too far from the server's time")

    async def _dispatch(self, endpoint: Endpoint, pki: PkiMessage, content: bytes,
                        algorithms: ReplyAlgorithms) -> bytes:
        kind = pki.header.message_type
        if kind is MessageType.PKCS_REQ:
            return await self._enroll(endpoint, pki, content, algorithms, renewal=False)
        if kind in (MessageType.RENEWAL_REQ, MessageType.UPDATE_REQ):
            return await self._enroll(endpoint, pki, content, algorithms, renewal=True)
        if kind is MessageType.CERT_POLL:
            return await self._poll(endpoint, pki, content, algorithms)
        if kind is MessageType.GET_CERT:
            return self._get_cert(endpoint, pki, content, algorithms)
        if kind is MessageType.GET_CRL:
            return await self._get_crl(endpoint, pki, content, algorithms)
        raise ScepFailure(FailInfo.BAD_REQUEST, f"messageType {kind.value} is not a request")

    # -- enrollment --------------------------------------------------------------------

    async def _enroll(self, endpoint: Endpoint, pki: PkiMessage, content: bytes,
                      algorithms: ReplyAlgorithms, *, renewal: bool) -> bytes:
        try:
            # DER as it came: gateway.pem.load_csr strips whitespace, which would cut a
            # DER CSR ending in 0x09-0x0d or 0x20.
            csr, csr_der = load_csr_der(content), content
        except GatewayError as exc:
            raise ScepFailure(FailInfo.BAD_REQUEST, f"the CSR cannot be used: {exc.detail}"
                              ) from exc
        # A PKCSReq signed with a certificate we issued is a renewal too (certmonger's
        # re-enrollment, RFC 8894 §3.3.1.2): the certificate authenticates it.
        renewal_of = self._inventory_serial(endpoint, pki)
        if renewal and renewal_of is None:
            raise ScepFailure(FailInfo.BAD_REQUEST,
                              "RenewalReq must be signed with a certificate this gateway "
                              f"issued under profile {endpoint.profile_name!r}")
        subject_der = asn1_csr.CertificationRequest.load(csr_der)[
            "certification_request_info"]["subject"].dump()
        key = transaction_key(endpoint.profile_name, pki.header.transaction_id, subject_der,
                              renewal_of)
        dynamic = renewal_of is None and endpoint.profile.scep.challenge is ChallengeMode.DYNAMIC
        principal = None
        if dynamic:
            # One transaction: a repeated message must not spend the challenge again.
            admission = self._gateway.challenges.admit(
                protocol=Protocol.SCEP, transaction_id=key, profile=endpoint.profile_name,
                csr=csr, secret=_challenge_of(csr))
            existing, principal = admission.request_id, admission.principal
        else:
            existing = self._gateway.requests.request_id(Protocol.SCEP, key)
        if existing is not None:
            result = await self._gateway.enrollment.resume(existing)
            return self._answer(endpoint, pki, result, algorithms)
        if renewal_of is not None:
            # Identified by the certificate's SHA-256, like every client-cert principal.
            fingerprint = hashlib.sha256(pki.signer_der).hexdigest()
            principal = Principal(PrincipalKind.CLIENT_CERT, fingerprint, {
                "serial": renewal_of, "sha256": fingerprint, "profile": endpoint.profile_name})
            same_key = _spki(csr.public_key()) == _spki(pki.signer.public_key())
            operation = Operation.RENEW if same_key else Operation.REKEY
        else:
            principal = principal or await self._authenticate(endpoint, pki, csr, csr_der)
            operation = Operation.ENROLL
        request = EnrollmentRequest(
            protocol=Protocol.SCEP, operation=operation, profile=endpoint.profile_name,
            csr=csr, csr_der=csr_der, principal=principal, renewal_of=renewal_of,
            transaction_id=key)
        result = await self._gateway.enrollment.submit(request)
        return self._answer(endpoint, pki, result, algorithms)

    async def _authenticate(self, endpoint: Endpoint, pki: PkiMessage,
                            csr: x509.CertificateSigningRequest, csr_der: bytes) -> Principal:
        settings = endpoint.profile.scep
        mode = settings.challenge
        if mode is ChallengeMode.NONE:
            return Principal(PrincipalKind.SCEP_CHALLENGE, f"none:{endpoint.profile_name}")
        secret = _challenge_of(csr)
        if not secret:
            raise GatewayError(ErrorKind.UNAUTHORIZED, "the CSR has no challengePassword")
        if mode is ChallengeMode.STATIC:
            env = settings.static_challenge_env
            clear = os.environ.get(env) or None if env else None
            if not challenges.check_static(secret, stored_hash=settings.static_challenge_hash,
                                           clear_value=clear):
                raise GatewayError(ErrorKind.UNAUTHORIZED, "wrong challenge password")
            return challenges.static_principal(endpoint.profile_name)
        if mode is ChallengeMode.WEBHOOK:
            return await webhook.validate(
                settings, data_dir=self._gateway.data_dir, profile=endpoint.profile_name,
                transaction_id=pki.header.transaction_id, challenge=secret, csr=csr,
                csr_der=csr_der)
        return self._gateway.challenges.consume(profile=endpoint.profile_name, csr=csr,
                                                secret=secret)

    # -- polling and retrieval ---------------------------------------------------------

    async def _poll(self, endpoint: Endpoint, pki: PkiMessage, content: bytes,
                    algorithms: ReplyAlgorithms) -> bytes:
        names = message.issuer_and_subject(content)
        key = transaction_key(endpoint.profile_name, pki.header.transaction_id,
                              names["subject"].dump(), self._inventory_serial(endpoint, pki))
        request_id = self._gateway.requests.request_id(Protocol.SCEP, key)
        if request_id is None:
            raise ScepFailure(FailInfo.BAD_CERT_ID, "no request with this transactionID")
        result = await self._gateway.enrollment.resume(request_id)
        return self._answer(endpoint, pki, result, algorithms)

    def _get_cert(self, endpoint: Endpoint, pki: PkiMessage, content: bytes,
                  algorithms: ReplyAlgorithms) -> bytes:
        record = self._certificate_named(content)
        return self._success(endpoint, pki, algorithms, (record.der,))

    async def _get_crl(self, endpoint: Endpoint, pki: PkiMessage, content: bytes,
                       algorithms: ReplyAlgorithms) -> bytes:
        record = self._certificate_named(content)
        crl = await self._gateway.revocation.crl(record.backend, record.issuer_id)
        return self._success(endpoint, pki, algorithms, (), crl)

    def _certificate_named(self, content: bytes) -> CertificateRecord:
        wanted = message.issuer_and_serial(content)
        serial = format(wanted["serial_number"].native, "x")
        record = self._gateway.inventory.certificate(serial)
        if record is None:
            raise ScepFailure(FailInfo.BAD_CERT_ID, "no certificate with this serial")
        found = asn1_x509.Certificate.load(record.der)
        if found.issuer != wanted["issuer"]:
            raise ScepFailure(FailInfo.BAD_CERT_ID, "no certificate with this issuer")
        return record

    # -- answers -----------------------------------------------------------------------

    def _answer(self, endpoint: Endpoint, pki: PkiMessage, result: EnrollmentResult,
                algorithms: ReplyAlgorithms) -> bytes:
        if result.state is RequestState.ISSUED and result.certificate is not None:
            return self._success(endpoint, pki, algorithms, (result.certificate.der,))
        return certrep.pending(pki.header, endpoint.ra, algorithms)

    def _success(self, endpoint: Endpoint, pki: PkiMessage, algorithms: ReplyAlgorithms,
                 certificates_der: tuple[bytes, ...], crl_der: bytes | None = None) -> bytes:
        try:
            return certrep.success(pki.header, endpoint.ra, algorithms, recipient_der=pki.signer_der,
                                   certificates_der=certificates_der, crl_der=crl_der)
        except CmsUnsupportedAlgorithm as exc:
            raise ScepFailure(FailInfo.BAD_ALG, "replies can only be encrypted to RSA or EC "
                                                "signer certificates") from exc

    @staticmethod
    def _answer_error(endpoint: Endpoint, header: Header, algorithms: ReplyAlgorithms,
                      error: GatewayError) -> bytes:
        fail_info = fail_info_for(error.kind)
        if fail_info is None:
            return certrep.pending(header, endpoint.ra, algorithms)
        return certrep.failure(header, endpoint.ra, algorithms, fail_info, client_detail(error))

    # -- lookups -----------------------------------------------------------------------

    def _inventory_serial(self, endpoint: Endpoint, pki: PkiMessage) -> str | None:
        """The signer's serial when the signer is a certificate from our inventory, issued
        under this endpoint's profile: another profile's certificate proves nothing here
        (the request is then a first enrollment, with a challenge)."""
        if pki.signer.issuer == pki.signer.subject:
            return None  # self-signed: a first enrollment; never in the inventory
        serial = format(pki.signer.serial_number, "x")
        record = self._gateway.inventory.issued_under(endpoint.profile_name, serial,
                                                      pki.signer_der)
        return serial if record is not None else None


def _challenge_of(csr: x509.CertificateSigningRequest) -> str | None:
    try:
        value = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except (x509.AttributeNotFound, ValueError):
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.strip() or None


def _spki(key: object) -> bytes:
    return key.public_bytes(_DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined,no-any-return]


__all__ = ["Endpoint", "PkiOperations", "transaction_key"]
