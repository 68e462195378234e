"""What the console's forms do, apart from HTTP: each returns an outcome to show."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.orm import Session

from gateway.admin.queries import AuditFilter, audit_events
from gateway.auth import challenges, eab
from gateway.errors import GatewayError
from gateway.model import RevocationReason
from gateway.runtime import Gateway
from gateway.store.certificates import CertificateFilter
from gateway.store.tables import AuditEventRow

SERIAL = re.compile(r"^(0x)?[0-9A-Fa-f:]{1,100}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SAFE = re.compile(r"^[^\x00-\x1f\x7f]{0,255}$")
SEARCH_FIELDS = ("serial", "subject", "san", "profile", "backend", "status", "expiring_days")
REASONS = [reason.value for reason in RevocationReason if reason is not RevocationReason.REMOVE_FROM_CRL]


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    message: str

    def query(self) -> dict[str, str]:
        return {"notice" if self.ok else "error": self.message}


def refused(exc: GatewayError) -> Outcome:
    """The console's answer to a refused action, for every error kind: the detail as raised.

    The console is operator-facing (like the admin API, which answers the same error with
    the core's status): operators see the detail, which is also in the log and the audit
    trail.  The console answers actions with a redirect (Post/Redirect/Get), so the kind's
    HTTP status (``gateway.errors.http_status``) is not sent; the message is.
    """
    return Outcome(False, exc.detail)


def pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


async def decide(gateway: Gateway, request_id: str, verb: str, *, by: str,
                 reason: str) -> Outcome:
    if not UUID.fullmatch(request_id) or verb not in ("approve", "deny"):
        return Outcome(False, "No such request or action.")
    try:
        if verb == "approve":
            result = await gateway.enrollment.approve(request_id, by=by)
            serial = f", serial {result.certificate.serial}" if result.certificate else ""
            return Outcome(True, f"Approved {request_id}: {result.state.value}{serial}")
        if not _SAFE.fullmatch(reason):
            return Outcome(False, "The reason has unusual characters or is too long.")
        gateway.enrollment.deny(request_id, by=by, reason=reason or f"denied by {by}")
        return Outcome(True, f"Denied {request_id}.")
    except GatewayError as exc:
        return refused(exc)


async def revoke(gateway: Gateway, serial: str, reason_text: str, *, by: str) -> Outcome:
    if not SERIAL.fullmatch(serial):
        return Outcome(False, "No such certificate.")
    try:
        reason = RevocationReason(reason_text)
        state = await gateway.revocation.revoke(serial, reason, by=by)
    except ValueError:
        return Outcome(False, "Unknown revocation reason.")
    except GatewayError as exc:
        return refused(exc)
    if state == "done":
        return Outcome(True, f"Revoked ({reason.value}); the CRL is re-signed on its next fetch.")
    return Outcome(True, "Revocation recorded; this CA cannot revoke: it needs an operator.")


def certificate_filter(params: Mapping[str, str]) -> CertificateFilter | None:
    values = {k: params.get(k, "").strip() for k in SEARCH_FIELDS}
    if not any(values.values()) or not all(_SAFE.fullmatch(v) for v in values.values()):
        return None
    expiring_before = None
    if values["expiring_days"].isdigit():
        expiring_before = dt.datetime.now(dt.UTC) + dt.timedelta(
            days=min(int(values["expiring_days"]), 36500))
    return CertificateFilter(
        serial=values["serial"] if SERIAL.fullmatch(values["serial"]) else None,
        subject=values["subject"] or None, san=values["san"] or None,
        profile=values["profile"] or None, backend=values["backend"] or None,
        status=values["status"] if values["status"] in ("valid", "revoked") else None,
        expiring_before=expiring_before, limit=200)


def audit_filter(params: Mapping[str, str]) -> AuditFilter:
    values = {k: params.get(k, "").strip() for k in ("actor", "action", "outcome", "serial")}
    clean = {k: v if v and _SAFE.fullmatch(v) else None for k, v in values.items()}
    return AuditFilter(actor=clean["actor"], action=clean["action"], outcome=clean["outcome"],
                       serial=clean["serial"], limit=200)


def audit_rows(session: Session, where: AuditFilter) -> list[AuditEventRow]:
    return audit_events(session, where)


@dataclass(frozen=True, slots=True)
class Created:
    kind: str  # challenge | eab
    profile: str
    secret: str
    key_id: str
    expires_at: dt.datetime | None


def create_credential(gateway: Gateway, kind: str,
                      form: Mapping[str, str]) -> tuple[Created | None, str]:
    """Create a SCEP challenge or an EAB key; returns it (secret shown once) or a problem."""
    name = form.get("profile", "")
    profile = gateway.policy.profile(name)
    if profile is None:
        return None, "Unknown profile."
    now = gateway.clock.now()
    try:
        if kind == "challenge":
            if not profile.scep.enabled:
                return None, "That profile does not serve SCEP."
            hours = form.get("ttl_hours", "").strip()
            ttl = dt.timedelta(hours=min(int(hours), 24 * 90)) if hours.isdigit() and \
                int(hours) > 0 else dt.timedelta(seconds=profile.scep.challenge_ttl_seconds)
            uses_text = form.get("uses", "1").strip()
            uses = min(int(uses_text), 10000) if uses_text.isdigit() else 1
            pattern = form.get("subject_pattern", "").strip() or None
            if pattern is not None and not _SAFE.fullmatch(pattern):
                return None, "The subject pattern has unusual characters."
            with gateway.db.session() as session:
                issued = challenges.create_challenge(session, profile=name, now=now, ttl=ttl,
                                                     uses=uses, subject_pattern=pattern)
            return Created("challenge", name, issued.secret, issued.id, issued.expires_at), ""
        if kind == "eab":
            with gateway.db.session() as session:
                kid, key = eab.create(session, profile=name, kek=eab.load_kek(gateway.data_dir),
                                      now=now)
            return Created("eab", name, key, kid, None), ""
    except GatewayError as exc:
        return None, refused(exc).message
    return None, "Unknown credential kind."
