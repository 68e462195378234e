"""Revocation, CRLs (RFC 5280 §5) and OCSP (RFC 6960).

The inventory is the source of truth: a revocation is recorded in the database first,
then carried out at the backend.  A backend that cannot revoke (ADCS web enrollment)
leaves the request recorded as ``needs-operator``.  For backends that let the gateway
sign (``RevocationSigner``, the internal CA) CRLs are stored in the database, so every
instance serves the same CRL with a monotonic CRL number; a revocation marks them stale
and the next fetch (or the periodic refresh) re-signs.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import update
from sqlalchemy.orm import Session

from ca_backends.base import RevocationSigner, RevokedEntry, Unsupported
from gateway.backends import Backends
from gateway.clock import Clock
from gateway.errors import ErrorKind, GatewayError
from gateway.model import Principal, PrincipalKind, RevocationReason
from gateway.store import audit, certificates, requests
from gateway.store.certificates import CertificateStatus
from gateway.store.db import Database
from gateway.store.tables import CertificateRow, CrlRow

log = logging.getLogger("gatehouse.revocation")

CRL_VALIDITY = dt.timedelta(days=1)
OCSP_VALIDITY = dt.timedelta(hours=1)


def holder_may_revoke(session: Session, row: CertificateRow, principal: Principal,
                      profile: str) -> bool:
    """Whether a protocol client may revoke ``row`` as its holder (not as an operator).

    The certificate must belong to the profile the client speaks to, and the client must
    be the principal that enrolled it (same kind *and* id: an EST user name is unique
    only within its profile) or the certificate itself (a client-certificate principal
    with the same SHA-256 fingerprint).  Operators revoke through the CLI, the admin API
    or the console, which do not ask this.  ACME keeps RFC 8555 §7.6's own rule
    (protocols.acme.revoke): the ordering account or the certificate's key.
    """
    if row.profile != profile:
        return False
    if principal.kind is PrincipalKind.CLIENT_CERT \
            and principal.attributes.get("sha256") == row.fingerprint_sha256:
        return True
    request = requests.get(session, row.request_id) if row.request_id else None
    return (request is not None and request.profile == profile
            and request.principal_kind == principal.kind.value
            and request.principal_id == principal.id)


class RevocationService:
    def __init__(self, db: Database, backends: Backends, clock: Clock) -> None:
        self._db = db
        self._backends = backends
        self._clock = clock

    def may_revoke_as_holder(self, serial: str, principal: Principal, profile: str) -> bool:
        """``holder_may_revoke`` for the certificate with ``serial`` (False if unknown)."""
        with self._db.session() as session:
            row = certificates.get(session, serial)
            return row is not None and holder_may_revoke(session, row, principal, profile)

    async def revoke(self, serial: str, reason: RevocationReason, *, by: str) -> str:
        """Revoke a certificate; returns the revocation state (done | needs-operator)."""
        now = self._clock.now()
        with self._db.session() as session:
            row = certificates.get(session, serial)
            if row is None:
                raise GatewayError(ErrorKind.NOT_FOUND, f"no certificate with serial {serial}")
            if row.status == CertificateStatus.REVOKED:
                raise GatewayError(ErrorKind.CONFLICT, "the certificate is already revoked")
            backend_name, canonical, profile = row.backend, row.serial, row.profile
        backend = self._backends.get(backend_name)
        state, detail = "done", ""
        try:
            await backend.revoke(canonical, reason)
        except Unsupported as exc:
            state, detail = "needs-operator", exc.detail
        with self._db.session() as session:
            row = certificates.get(session, canonical)
            assert row is not None
            certificates.mark_revoked(session, row, reason=reason, requested_by=by, state=state,
                                      detail=detail, now=now)
            if state == "done":
                self._mark_crls_stale(session, backend_name)
            audit.record(session, at=now, actor=by, action="certificate.revoked",
                         outcome=state, serial=canonical, profile=profile,
                         reason=reason.value, backend=backend_name, detail=detail)
        return state

    @staticmethod
    def _mark_crls_stale(session: Session, backend: str) -> None:
        session.execute(update(CrlRow).where(CrlRow.backend == backend).values(stale=True))

    # -- CRLs --------------------------------------------------------------------------

    def signer(self, backend_name: str) -> RevocationSigner:
        """The backend named in a CRL, OCSP or AIA URL; NOT_FOUND for a name no backend has
        (a client's path, not a configuration error)."""
        if backend_name not in self._backends.names():
            raise GatewayError(ErrorKind.NOT_FOUND, f"no backend {backend_name!r}")
        backend = self._backends.get(backend_name)
        if not isinstance(backend, RevocationSigner):
            raise GatewayError(ErrorKind.NOT_FOUND, f"backend {backend_name!r} has no gateway CRL")
        return backend

    async def crl(self, backend_name: str, issuer_id: str | None = None) -> bytes:
        """The current CRL (DER) of a backend's issuer; re-signed when stale or due."""
        try:
            backend = self._backends.get(backend_name)
        except GatewayError:
            raise GatewayError(ErrorKind.NOT_FOUND, f"no backend {backend_name!r}") from None
        if not isinstance(backend, RevocationSigner):
            data = await backend.crl()
            if data is None:
                raise GatewayError(ErrorKind.NOT_FOUND, f"backend {backend_name!r} has no CRL")
            return data
        issuers = backend.issuers()
        if issuer_id is None:
            now = self._clock.now()
            active = [i for i in issuers if i.active_from <= now] or issuers
            issuer_id = active[-1].id
        if issuer_id not in {i.id for i in issuers}:
            raise GatewayError(ErrorKind.NOT_FOUND, f"no issuer {issuer_id!r}")
        return self._current_crl(backend_name, backend, issuer_id)

    def _current_crl(self, backend_name: str, signer: RevocationSigner, issuer_id: str) -> bytes:
        now = self._clock.now()
        with self._db.session() as session:
            row = session.get(CrlRow, (backend_name, issuer_id))
            validity_now: dt.timedelta = getattr(signer, "crl_validity", CRL_VALIDITY)
            if row is not None and not row.stale and row.next_update - now > validity_now / 2:
                return row.der
            revoked = [
                RevokedEntry(c.serial, c.revoked_at or now,
                             RevocationReason(c.revocation_reason or "unspecified"))
                for c in certificates.revoked_for(session, backend=backend_name,
                                                  issuer_id=issuer_id)
            ]
            number = (row.number + 1) if row is not None else 1
            this_update = now.replace(microsecond=0)
            validity: dt.timedelta = getattr(signer, "crl_validity", CRL_VALIDITY)
            next_update = this_update + validity
            der = signer.sign_crl(issuer_id, revoked, number, this_update, next_update)
            if row is None:
                session.add(CrlRow(backend=backend_name, issuer_id=issuer_id, number=number,
                                   this_update=this_update, next_update=next_update,
                                   der=der, stale=False))
            else:
                row.number, row.der, row.stale = number, der, False
                row.this_update, row.next_update = this_update, next_update
            return der

    async def refresh_crls(self) -> int:
        """Re-sign every due or stale CRL (the periodic job)."""
        count = 0
        for name, backend in self._backends.items():
            if isinstance(backend, RevocationSigner):
                for issuer in backend.issuers():
                    self._current_crl(name, backend, issuer.id)
                    count += 1
        return count

    # -- OCSP --------------------------------------------------------------------------

    def ocsp(self, backend_name: str, request_der: bytes) -> bytes:
        """Answer an OCSP request for a backend the gateway signs for."""
        signer = self.signer(backend_name)
        now = self._clock.now().replace(microsecond=0)
        # An unknown or malformed request still goes to the signer, which answers
        # malformedRequest / unauthorized as RFC 6960 §2.3 says.
        issuer = signer.issuer_for_request(request_der)
        issuer_id = issuer.id if issuer is not None else signer.issuers()[-1].id

        def status_of(serial: str) -> tuple[str, RevokedEntry | None]:
            with self._db.session() as session:
                row: CertificateRow | None = certificates.get(session, serial)
                if row is None or row.backend != backend_name:
                    return "unknown", None
                if row.status == CertificateStatus.REVOKED:
                    return "revoked", RevokedEntry(row.serial, row.revoked_at or now,
                                                   RevocationReason(row.revocation_reason
                                                                    or "unspecified"))
                return "good", None

        validity = getattr(signer, "ocsp_validity", OCSP_VALIDITY)
        return signer.sign_ocsp(issuer_id, request_der, status_of, now, now + validity)
