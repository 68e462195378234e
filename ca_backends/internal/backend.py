"""The internal CA backend: Gatehouse's own root and issuing CA, keys held by the gateway.

Backend type ``internal`` (ca_backends.registry).  Besides the CaBackend interface it has the
RevocationSigner ability (the gateway keeps revocation state and has this backend sign
CRLs, RFC 5280 §5, and OCSP answers, RFC 6960) and the Rollover ability (a successor
issuing CA is published before it takes over).

The building blocks are this package's sibling modules; this module gathers the public
API (``init_internal_ca``, ``init_from_config``, ``rollover``, ``ensure_passphrase``,
``read_passphrase``, ``issue_tls_server_cert``), which the package re-exports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ca_backends.base import (
    BackendContext,
    BackendRejected,
    Health,
    IssuerInfo,
    RevokedEntry,
    Unsupported,
)
from ca_backends.internal import revocation
from ca_backends.internal.certs import LeafPublicKey, LeafUrls, SigningIssuer, build_leaf
from ca_backends.internal.config import InternalCaConfig
from ca_backends.internal.files import (
    CaSetupError,
    ensure_passphrase,
    read_passphrase,
    resolve,
)
from ca_backends.internal.keys import KeyType
from ca_backends.internal.lifecycle import LoadedCa, init_internal_ca, load_ca, rollover
from ca_backends.internal.tls import issue_tls_server_cert
from gateway.clock import Clock
from gateway.errors import ErrorKind, GatewayError
from gateway.model import (
    Decision,
    EnrollmentRequest,
    Identifier,
    IssuedCertificate,
    Pending,
    RevocationReason,
)

_DER = serialization.Encoding.DER

__all__ = [
    "CaSetupError",
    "InternalCa",
    "InternalCaConfig",
    "KeyType",
    "build_internal_ca",
    "ensure_passphrase",
    "init_from_config",
    "init_internal_ca",
    "issue_tls_server_cert",
    "read_passphrase",
    "rollover",
]


class InternalCa:
    """A CaBackend whose issuing keys are decrypted once, when it is built.

    Signing is a few hundred microseconds of CPU, so it runs inline in the event loop.
    The issuer is chosen per call from the clock: the highest generation whose
    ``active_from`` has passed (generation 1 if the clock is before all of them).
    """

    def __init__(
        self,
        name: str,
        ca: LoadedCa,
        *,
        public_http_url: str,
        clock: Clock,
        crl_validity: dt.timedelta = dt.timedelta(days=1),
        ocsp_validity: dt.timedelta = dt.timedelta(hours=1),
    ) -> None:
        if not ca.issuers:
            raise CaSetupError("the internal CA has no issuing CA")
        self.name = name
        self._root = ca.root
        self._issuers = sorted(ca.issuers, key=lambda issuer: int(issuer.info.id))
        self._by_id = {issuer.info.id: issuer for issuer in self._issuers}
        self._public_http_url = public_http_url.rstrip("/")
        self._clock = clock
        self._crl_validity = crl_validity
        self._ocsp_validity = ocsp_validity

    @classmethod
    def load(
        cls,
        name: str,
        directory: Path,
        passphrase: bytes,
        *,
        public_http_url: str,
        clock: Clock,
        crl_validity: dt.timedelta = dt.timedelta(days=1),
        ocsp_validity: dt.timedelta = dt.timedelta(hours=1),
    ) -> InternalCa:
        """Read the CA in ``directory`` and decrypt its issuing keys (CaSetupError if not)."""
        return cls(
            name,
            load_ca(directory, passphrase),
            public_http_url=public_http_url,
            clock=clock,
            crl_validity=crl_validity,
            ocsp_validity=ocsp_validity,
        )

    # -- what the CA is --------------------------------------------------------------------

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._root

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def crl_validity(self) -> dt.timedelta:
        """thisUpdate to nextUpdate for CRLs the gateway has this backend sign."""
        return self._crl_validity

    @property
    def ocsp_validity(self) -> dt.timedelta:
        """thisUpdate to nextUpdate for OCSP answers the gateway has this backend sign."""
        return self._ocsp_validity

    def active_issuer(self, at: dt.datetime | None = None) -> IssuerInfo:
        """The generation that signs new certificates at ``at`` (default: now)."""
        return self._active(at).info

    def _active(self, at: dt.datetime | None = None) -> SigningIssuer:
        moment = self._clock.now() if at is None else at
        started = [issuer for issuer in self._issuers if issuer.info.active_from <= moment]
        return started[-1] if started else self._issuers[0]

    # -- CaBackend ---------------------------------------------------------------------------

    async def issue(
        self, request: EnrollmentRequest, decision: Decision
    ) -> IssuedCertificate | Pending:
        """Sign exactly what ``decision`` says, for the key in ``request.csr``.

        Validity is clipped to the issuing CA's; BackendRejected when the CSR's signature
        fails, its key type cannot be certified, or the decision cannot be encoded.
        """
        if decision.not_after is None:
            raise BackendRejected("the decision has no notAfter")
        try:
            public_key = request.csr.public_key()
            signature_ok = request.csr_signature_ok
        except (UnsupportedAlgorithm, ValueError) as exc:
            raise BackendRejected("the CSR's key type is not supported") from exc
        if not signature_ok:
            raise BackendRejected("the CSR signature does not verify")
        if not isinstance(
            public_key,
            rsa.RSAPublicKey
            | ec.EllipticCurvePublicKey
            | ed25519.Ed25519PublicKey
            | ed448.Ed448PublicKey,
        ):
            raise BackendRejected("the CSR's key type is not supported")
        return self.sign_certificate(
            public_key,
            subject=decision.subject,
            sans=decision.sans,
            not_before=decision.not_before or self._clock.now(),
            not_after=decision.not_after,
            key_usage=decision.key_usage,
            extended_key_usage=decision.extended_key_usage,
        )

    def sign_certificate(
        self,
        public_key: LeafPublicKey,
        *,
        subject: x509.Name,
        sans: Iterable[Identifier],
        not_before: dt.datetime,
        not_after: dt.datetime,
        key_usage: Iterable[str] = (),
        extended_key_usage: Iterable[str] = (),
    ) -> IssuedCertificate:
        """Issue an end-entity certificate from the active issuer (see certs.build_leaf)."""
        issuer = self._active()
        issuer_cert = issuer.certificate
        names = tuple(sans)
        certificate = build_leaf(
            issuer=issuer,
            public_key=public_key,
            subject=subject,
            sans=names,
            not_before=max(not_before, issuer_cert.not_valid_before_utc),
            not_after=min(not_after, issuer_cert.not_valid_after_utc),
            key_usage=key_usage,
            extended_key_usage=extended_key_usage,
            urls=LeafUrls.for_issuer(self._public_http_url, self.name, issuer.info.id),
        )
        return IssuedCertificate(
            serial=format(certificate.serial_number, "x"),
            issuer=certificate.issuer.rfc4514_string(),
            subject=certificate.subject.rfc4514_string(),
            sans=names,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            der=certificate.public_bytes(_DER),
            chain=(issuer.der, self._root.public_bytes(_DER)),
            backend=self.name,
            backend_ref=None,
        )

    async def poll(self, backend_ref: str) -> IssuedCertificate | Pending:
        """Never needed: the internal CA answers every request at once."""
        raise Unsupported("the internal CA never answers 'pending'")

    async def revoke(self, serial: str, reason: RevocationReason) -> None:
        """Nothing to do here: the gateway's database is this CA's revocation state.

        The gateway records the revocation and has this backend sign CRLs and OCSP
        answers from that record (``sign_crl``, ``sign_ocsp``), so there is no second
        copy that could disagree.
        """

    async def ca_chain(self) -> list[x509.Certificate]:
        return [self._active().certificate, self._root]

    async def crl(self) -> None:
        """None: the gateway serves the CRLs it has this backend sign (``sign_crl``)."""
        return None

    async def health(self) -> Health:
        now = self._clock.now()
        issuer = self._active(now).certificate
        for label, certificate in (("root CA", self._root), ("issuing CA", issuer)):
            if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
                return Health(ok=False, detail=f"the {label} is not valid now")
        return Health(
            ok=True, detail=f"issuing CA valid until {issuer.not_valid_after_utc.isoformat()}"
        )

    async def close(self) -> None:
        """Nothing to release."""

    # -- Rollover ----------------------------------------------------------------------------

    def next_ca_chain(self) -> list[x509.Certificate] | None:
        """[successor issuer, root] while a generation waits to take over, else None."""
        now = self._clock.now()
        waiting = [issuer for issuer in self._issuers if issuer.info.active_from > now]
        return [waiting[0].certificate, self._root] if waiting else None

    # -- RevocationSigner --------------------------------------------------------------------

    def issuers(self) -> list[IssuerInfo]:
        return [issuer.info for issuer in self._issuers]

    def issuer_by_id(self, issuer_id: str) -> IssuerInfo:
        return self._signer(issuer_id).info

    def issuer_der(self, issuer_id: str) -> bytes:
        """The issuing CA certificate in DER, as served at the caIssuers URL."""
        return self._signer(issuer_id).der

    def issuer_for(self, certificate: x509.Certificate) -> IssuerInfo | None:
        """The generation that issued ``certificate``: by AKI keyIdentifier = SKI.

        Without a keyIdentifier, by issuer name, confirmed by the signature.
        """
        try:
            key_id = certificate.extensions.get_extension_for_class(
                x509.AuthorityKeyIdentifier
            ).value.key_identifier
        except x509.ExtensionNotFound:
            key_id = None
        if key_id is not None:
            for issuer in self._issuers:
                if issuer.key_identifier == key_id:
                    return issuer.info
            return None
        for issuer in self._issuers:
            if issuer.certificate.subject != certificate.issuer:
                continue
            try:
                certificate.verify_directly_issued_by(issuer.certificate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return issuer.info
        return None

    def issuer_for_request(self, request_der: bytes) -> IssuerInfo | None:
        """The generation an OCSP request's CertID names, None if none (or unparsable)."""
        request = revocation.parse_request(request_der)
        if request is None:
            return None
        for issuer in self._issuers:
            if revocation.names_issuer(request, issuer):
                return issuer.info
        return None

    def sign_crl(
        self,
        issuer_id: str,
        revoked: list[RevokedEntry],
        number: int,
        this_update: dt.datetime,
        next_update: dt.datetime,
    ) -> bytes:
        """A complete CRL for one generation (revocation.sign_crl)."""
        return revocation.sign_crl(
            self._signer(issuer_id), revoked, number, this_update, next_update
        )

    def sign_ocsp(
        self,
        issuer_id: str,
        request_der: bytes,
        status_of: Callable[[str], tuple[str, RevokedEntry | None]],
        this_update: dt.datetime,
        next_update: dt.datetime,
    ) -> bytes:
        """An OCSP response signed by the generation's own key (revocation.sign_ocsp)."""
        return revocation.sign_ocsp(
            self._signer(issuer_id), request_der, status_of, this_update, next_update
        )

    def _signer(self, issuer_id: str) -> SigningIssuer:
        issuer = self._by_id.get(issuer_id)
        if issuer is None:
            raise GatewayError(ErrorKind.NOT_FOUND, f"no issuing CA {issuer_id!r}")
        return issuer


def build_internal_ca(name: str, config: InternalCaConfig, context: BackendContext) -> InternalCa:
    """The factory (ca_backends.registry): load ``<data_dir>/<directory>`` with the configured passphrase."""
    data_dir = Path(context.data_dir)
    directory = resolve(data_dir, config.directory)
    if not (directory / "root.pem").exists():
        raise CaSetupError(f"backend {name!r}: no internal CA in {directory}: run 'gatehouse init'")
    return InternalCa.load(
        name,
        directory,
        read_passphrase(config, data_dir),
        public_http_url=context.public_http_url,
        clock=context.clock,
        crl_validity=dt.timedelta(seconds=config.crl_validity),
        ocsp_validity=dt.timedelta(seconds=config.ocsp_validity),
    )


def init_from_config(
    config: InternalCaConfig,
    data_dir: Path,
    *,
    clock: Clock,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Create the CA a config entry describes (``gatehouse init``); return its directory.

    The passphrase is ``$<passphrase_env>`` when set, else the passphrase file, created
    with a random passphrase when missing.
    """
    try:
        passphrase = read_passphrase(config, data_dir, environ)
    except CaSetupError:
        passphrase = ensure_passphrase(resolve(data_dir, config.passphrase_file))
    directory = resolve(data_dir, config.directory)
    init_internal_ca(
        directory,
        passphrase,
        config.key_type,
        clock=clock,
        subject_prefix=config.subject_prefix,
        organization=config.organization,
        root_validity_days=config.root_validity_days,
        issuer_validity_days=config.issuer_validity_days,
    )
    return directory

