"""The Inventory port: certificates the gateway issued, as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.store import certificates
from gateway.store.certificates import CertificateStatus
from gateway.store.db import Database
from gateway.store.tables import CertificateRow


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """One inventory entry, as an adapter may see it."""

    serial: str  # canonical lower-case hex
    der: bytes
    issuer: str  # RFC 4514
    issuer_id: str | None
    profile: str
    backend: str
    revoked: bool


class Inventory(Protocol):
    def certificate(self, serial: str) -> CertificateRecord | None:
        """The certificate with this serial (any spelling gateway.store accepts)."""

    def exact(self, serial: str, der: bytes) -> CertificateRecord | None:
        """The entry under ``serial`` only if it holds exactly ``der``, byte for byte."""

    def issued_under(self, profile: str, serial: str, der: bytes) -> CertificateRecord | None:
        """``exact`` restricted to certificates issued under ``profile``."""


def _record(row: CertificateRow) -> CertificateRecord:
    return CertificateRecord(serial=row.serial, der=bytes(row.der), issuer=row.issuer,
                             issuer_id=row.issuer_id, profile=row.profile, backend=row.backend,
                             revoked=row.status == CertificateStatus.REVOKED)


class StoreInventory:
    """Inventory over gateway.store.certificates; one short read session per call."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def certificate(self, serial: str) -> CertificateRecord | None:
        with self._db.session() as session:
            row = certificates.get(session, serial)
            return _record(row) if row is not None else None

    def exact(self, serial: str, der: bytes) -> CertificateRecord | None:
        record = self.certificate(serial)
        return record if record is not None and record.der == der else None

    def issued_under(self, profile: str, serial: str, der: bytes) -> CertificateRecord | None:
        record = self.exact(serial, der)
        return record if record is not None and record.profile == profile else None
