"""Request and response bodies of the admin API (pydantic, documented in OpenAPI)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.model import EnrollmentResult, RevocationReason
from gateway.request_records import RequestView
from gateway.store.certificates import chain_of
from gateway.store.tables import CertificateRow

# Text from the network: bounded, no control characters (no NUL reaches the database).
_TEXT = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                        pattern=r"^[A-Za-z0-9_.@-]+$")]
Text = Annotated[str, StringConstraints(max_length=500, pattern=_TEXT)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CertificateSummary(_Out):
    serial: str
    subject: str
    sans: list[str]
    profile: str
    protocol: str
    backend: str
    status: str
    not_before: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None
    request_id: str | None = None


class CertificateDetail(CertificateSummary):
    issuer: str
    sha256: str
    principal_id: str
    replaces: str | None = None
    replaced_by: str | None = None
    pem: str = Field(description="The certificate, PEM")
    chain_pem: list[str] = Field(description="Its chain, PEM, issuer first")


class CertificateList(_Out):
    items: list[CertificateSummary]
    count: int


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def summary(row: CertificateRow) -> CertificateSummary:
    return CertificateSummary(
        serial=row.serial, subject=row.subject, sans=list(row.sans), profile=row.profile,
        protocol=row.protocol, backend=row.backend, status=row.status,
        not_before=row.not_before, not_after=row.not_after, revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason, request_id=row.request_id)


def detail(row: CertificateRow) -> CertificateDetail:
    return CertificateDetail(
        **summary(row).model_dump(), issuer=row.issuer, sha256=row.fingerprint_sha256,
        principal_id=row.principal_id, replaces=row.replaces_serial,
        replaced_by=row.replaced_by_serial, pem=_pem(row.der),
        chain_pem=[_pem(der) for der in chain_of(row)])


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: RevocationReason = RevocationReason.UNSPECIFIED


class RevokeOut(_Out):
    serial: str
    state: str = Field(description="done, or needs-operator when the CA cannot revoke")


class EnrollIn(BaseModel):
    """A manual enrollment: a pasted CSR through the one pipeline."""

    model_config = ConfigDict(extra="forbid")
    profile: Name = "default"
    csr: Annotated[str, StringConstraints(min_length=1, max_length=65536)] = Field(
        description="PKCS#10, PEM or base64 DER")
    transaction_id: Annotated[str, StringConstraints(min_length=1, max_length=128,
                                                     pattern=r"^[A-Za-z0-9_.:-]+$")] | None = \
        Field(default=None, description="Idempotency key: the same id returns the same request")


class IssuedOut(_Out):
    serial: str
    subject: str
    not_after: dt.datetime
    pem: str
    chain_pem: list[str]


class EnrollmentOut(_Out):
    request_id: str
    state: str
    reason: str = ""
    retry_after: int | None = None
    certificate: IssuedOut | None = None


def enrollment_out(result: EnrollmentResult) -> EnrollmentOut:
    issued = None
    if result.certificate is not None:
        cert = result.certificate
        issued = IssuedOut(serial=cert.serial, subject=cert.subject, not_after=cert.not_after,
                           pem=_pem(cert.der), chain_pem=[_pem(der) for der in cert.chain])
    return EnrollmentOut(request_id=result.request_id, state=result.state.value,
                         reason=result.reason, retry_after=result.retry_after,
                         certificate=issued)


class RequestList(_Out):
    items: list[RequestView]  # the operators' view is the answer, field for field
    count: int


class DenyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = ""


class ChallengeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: Name = "default"
    ttl_seconds: int | None = Field(default=None, ge=60, le=90 * 86400,
                                    description="Default: the profile's SCEP challenge TTL")
    uses: int = Field(default=1, ge=1, le=10000)
    subject_pattern: Text | None = Field(
        default=None, description="Regex every CN and SAN of the CSR must fully match")


class ChallengeOut(_Out):
    id: str
    challenge: str = Field(description="Shown once; only its hash is stored")
    profile: str
    expires_at: dt.datetime
    uses: int
    subject_pattern: str | None = None


class ChallengeInfo(_Out):
    id: str
    profile: str
    uses_left: int | None
    expires_at: dt.datetime | None
    subject_pattern: str | None
    disabled: bool
    created_at: dt.datetime


class EabIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: Name = "default"
    ttl_seconds: int | None = Field(default=None, ge=60, le=3650 * 86400)


class EabOut(_Out):
    kid: str
    hmac_key: str = Field(description="base64url; shown once")
    profile: str


class EabInfo(_Out):
    kid: str
    profile: str
    used: bool
    bound_account: str | None
    disabled: bool
    created_at: dt.datetime


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: Name = "default"
    name: Name
    password: Annotated[str, StringConstraints(min_length=8, max_length=256, pattern=_TEXT)]


class UserInfo(_Out):
    profile: str
    name: str
    disabled: bool
    created_at: dt.datetime


class ProfileOut(_Out):
    name: str
    backend: str
    fallback_backend: str | None
    approval: str
    auth_methods: list[str]
    settings: dict[str, Any] = Field(description="The profile's whole configuration")


class BackendHealth(_Out):
    name: str
    type: str
    ok: bool
    detail: str


class AuditEventOut(_Out):
    id: int
    at: dt.datetime
    actor: str
    action: str
    outcome: str
    request_id: str | None
    serial: str | None
    profile: str | None
    reason: str
    details: dict[str, Any]


class AuditList(_Out):
    items: list[AuditEventOut]
    count: int
