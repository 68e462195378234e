"""The ACME state port (RFC 8555 §7.1): what the ACME adapter needs from the core's storage.

Boulder's WFE/SA split: ``protocols/acme`` speaks JWS and problem documents and keeps the
RFC's rules; this class owns ACME state.  Each method is one unit of work, in its own
transaction (the repositories in ``gateway.store.acme`` never commit), and returns frozen
values with typed states, never a database row.  Built once by ``gateway.runtime.Gateway``
(``gateway.acme``).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from gateway.auth import eab
from gateway.services.acme_model import (
    Account,
    AccountRefusal,
    AccountStatus,
    AcmeCertificate,
    Authorization,
    AuthorizationDetail,
    AuthorizationStatus,
    AuthorizationSummary,
    Challenge,
    ChallengeDetail,
    ChallengeStatus,
    KeyInUse,
    LimitExceeded,
    NewAccount,
    NewOrder,
    Order,
    OrderChange,
    OrderLimits,
    OrderState,
    OrderStatus,
    ValidationJob,
    ValidationResult,
)
from gateway.store import acme as store
from gateway.store import audit, certificates, requests
from gateway.store.db import Database

# -- row conversion ---------------------------------------------------------------------


def _account(row: Any) -> Account:
    return Account(row.id, row.profile, row.thumbprint, dict(row.jwk), AccountStatus(row.status),
                   tuple(row.contact or ()), bool(row.tos_agreed), row.eab_kid)


def _order(row: Any) -> Order:
    return Order(row.id, row.account_id, row.profile, row.directory, OrderStatus(row.status),
                 tuple(row.identifiers), row.not_before, row.not_after, row.expires, row.error,
                 row.replaces, row.request_id, row.certificate_serial)


def _summary(row: Any) -> AuthorizationSummary:
    return AuthorizationSummary(row.id, AuthorizationStatus(row.status), row.identifier_type,
                                row.identifier_value)


def _authorization(row: Any) -> Authorization:
    return Authorization(row.id, row.order_id, row.account_id, row.identifier_type,
                         row.identifier_value, bool(row.wildcard),
                         AuthorizationStatus(row.status), row.expires)


def _challenge(row: Any) -> Challenge:
    return Challenge(row.id, row.authorization_id, row.type, row.token,
                     ChallengeStatus(row.status), row.validated, row.error, int(row.attempts or 0))


class AcmeState:
    """The ACME state port; every method is its own transaction."""

    def __init__(self, db: Database, data_dir: Path) -> None:
        self._db = db
        self._data_dir = data_dir

    # -- nonces (RFC 8555 §6.5) ---------------------------------------------------------

    def issue_nonce(self, *, now: dt.datetime, lifetime: dt.timedelta) -> str:
        with self._db.begin() as connection:
            return store.fast_issue_nonce(connection, now=now, lifetime=lifetime)

    def exchange_nonce(self, used: str, *, now: dt.datetime,
                       lifetime: dt.timedelta) -> str | None:
        """Consume ``used`` and issue a fresh nonce; None if it is unknown, used or expired."""
        with self._db.begin() as connection:
            if not store.fast_consume_nonce(connection, used, now=now):
                return None
            return store.fast_issue_nonce(connection, now=now, lifetime=lifetime)

    def purge_nonces(self, *, now: dt.datetime) -> int:
        with self._db.session() as session:
            return store.purge_nonces(session, now=now)

    # -- accounts (RFC 8555 §7.3) -------------------------------------------------------

    def account(self, account_id: str) -> Account | None:
        with self._db.begin() as connection:
            row = store.fast_account(connection, account_id)
            return _account(row) if row is not None else None

    def account_by_key(self, profile: str, thumbprint: str) -> Account | None:
        with self._db.session() as session:
            row = store.account_by_thumbprint(session, profile, thumbprint)
            return _account(row) if row is not None else None

    def eab_key(self, *, profile: str, kid: str, now: dt.datetime) -> eab.EabKey | None:
        """The usable External Account Binding key ``kid`` (RFC 8555 §7.3.4), unsealed."""
        kek = eab.load_kek(self._data_dir)
        with self._db.session() as session:
            return eab.lookup(session, profile=profile, kid=kid, kek=kek, now=now)

    def create_account(self, new: NewAccount, *, eab_key: eab.EabKey | None,
                       now: dt.datetime) -> Account | AccountRefusal:
        """The account, and the EAB key used up for it, in one transaction."""
        try:
            with self._db.session() as session:
                row = store.add_account(session, profile=new.profile, thumbprint=new.thumbprint,
                                        jwk=dict(new.jwk), contact=list(new.contact),
                                        tos_agreed=new.tos_agreed,
                                        eab_kid=eab_key.kid if eab_key else None, now=now)
                if eab_key is not None and not eab.bind(session, eab_key, row.id):
                    raise _Refused(AccountRefusal.EAB_KEY_USED)
                return _account(row)
        except IntegrityError:
            return AccountRefusal.KEY_IN_USE
        except _Refused as refused:
            return refused.refusal

    def update_account(self, account_id: str, *, contact: Sequence[str] | None = None,
                       deactivate: bool = False) -> Account | None:
        with self._db.session() as session:
            row = store.account(session, account_id)
            if row is None:
                return None
            if contact is not None:
                row.contact = list(contact)
            if deactivate:
                row.status = AccountStatus.DEACTIVATED.value  # RFC 8555 §7.3.6
            return _account(row)

    def change_account_key(self, account_id: str, *, profile: str, jwk: Mapping[str, Any],
                           thumbprint: str) -> Account | KeyInUse | None:
        """RFC 8555 §7.3.5: the new key, unless another account of ``profile`` holds it."""
        with self._db.session() as session:
            other = store.account_by_thumbprint(session, profile, thumbprint)
            if other is not None:
                return KeyInUse(other.id)
            row = store.account(session, account_id)
            if row is None:
                return None
            row.jwk, row.thumbprint = dict(jwk), thumbprint
            return _account(row)

    # -- orders (RFC 8555 §7.4) ---------------------------------------------------------

    def create_order(self, new: NewOrder, *, limits: OrderLimits,
                     now: dt.datetime) -> OrderState | LimitExceeded:
        """The order, its authorizations and challenges, unless a rate limit is reached."""
        order_id = store.new_id()
        order = {"id": order_id, "account_id": new.account_id, "profile": new.profile,
                 "directory": new.directory, "status": OrderStatus.PENDING.value,
                 "identifiers": [dict(i) for i in new.identifiers],
                 "not_before": new.not_before, "not_after": new.not_after,
                 "expires": new.expires, "error": None, "replaces": new.replaces,
                 "request_id": None, "certificate_serial": None, "created_at": now,
                 "updated_at": now}
        authz_rows: list[dict[str, Any]] = []
        challenge_rows: list[dict[str, Any]] = []
        for authz in new.authorizations:
            authz_id = store.new_id()
            authz_rows.append({"id": authz_id, "order_id": order_id,
                               "account_id": new.account_id,
                               "identifier_type": authz.identifier_type,
                               "identifier_value": authz.identifier_value,
                               "wildcard": authz.wildcard,
                               "status": AuthorizationStatus.PENDING.value,
                               "expires": new.authorization_expires, "created_at": now})
            token = secrets.token_urlsafe(32)  # RFC 8555 §8.1: ≥128 bits of entropy
            for kind in authz.challenge_types:
                challenge_rows.append({"id": store.new_id(), "authorization_id": authz_id,
                                       "type": kind, "token": token,
                                       "status": ChallengeStatus.PENDING.value,
                                       "validated": None, "error": None, "attempts": 0,
                                       "next_attempt_at": None, "lease_until": None,
                                       "detail": ""})
        with self._db.begin() as connection:
            if store.count_orders_since(connection, new.account_id,
                                        limits.since) >= limits.per_account:
                return LimitExceeded(None)
            for value in limits.identifiers:
                if store.count_identifier_since(connection, value,
                                                limits.since) >= limits.per_identifier:
                    return LimitExceeded(value)
            store.fast_insert(connection, "order", [order])
            store.fast_insert(connection, "authz", authz_rows)
            store.fast_insert(connection, "challenge", challenge_rows)
        authz_rows.sort(key=lambda a: str(a["identifier_value"]))
        return OrderState(_order(_Values(order)), tuple(_summary(_Values(a)) for a in authz_rows))

    def order(self, order_id: str) -> Order | None:
        with self._db.begin() as connection:
            row = store.fast_order(connection, order_id)
            return _order(row) if row is not None else None

    def order_state(self, order_id: str) -> OrderState | None:
        with self._db.begin() as connection:
            return _order_state(connection, order_id)

    def account_order_ids(self, account_id: str, statuses: Sequence[OrderStatus], *,
                          limit: int) -> list[str]:
        """The account's orders in ``statuses``, oldest first (RFC 8555 §7.1.2.1)."""
        with self._db.session() as session:
            return store.order_ids(session, account_id, [s.value for s in statuses],
                                   limit=limit)

    def apply_order_change(self, order_id: str, *, expected: OrderStatus, change: OrderChange,
                           now: dt.datetime) -> OrderState | None:
        """Move the order to ``change`` if it is still ``expected``; the order as it now is."""
        with self._db.begin() as connection:
            store.fast_update_where(connection, "order", order_id, status=expected.value,
                                    values={"status": change.status.value,
                                            "error": _json(change.error), "updated_at": now})
            return _order_state(connection, order_id)

    def claim_for_finalize(self, order_id: str, *, now: dt.datetime) -> bool:
        """ready → processing, for one finalize request only (RFC 8555 §7.4)."""
        with self._db.begin() as connection:
            return store.fast_update_where(
                connection, "order", order_id, status=OrderStatus.READY.value,
                values={"status": OrderStatus.PROCESSING.value, "updated_at": now})

    def link_order_request(self, order_id: str, *, request_id: str,
                           now: dt.datetime) -> OrderState | None:
        """Record the enrollment request still working on a processing order."""
        return self._update_order(order_id, request_id=request_id, updated_at=now)

    def mark_order_valid(self, order_id: str, *, request_id: str, certificate_serial: str,
                         now: dt.datetime) -> OrderState | None:
        return self._update_order(order_id, request_id=request_id,
                                  status=OrderStatus.VALID.value,
                                  certificate_serial=certificate_serial, updated_at=now)

    def mark_order_invalid(self, order_id: str, *, error: Mapping[str, Any],
                           now: dt.datetime) -> OrderState | None:
        return self._update_order(order_id, status=OrderStatus.INVALID.value,
                                  error=_json(error), updated_at=now)

    def _update_order(self, order_id: str, **values: Any) -> OrderState | None:
        with self._db.begin() as connection:
            store.fast_update(connection, "order", order_id, **values)
            return _order_state(connection, order_id)

    def request_id_for_order(self, order_id: str, *, protocol: str) -> str | None:
        """The enrollment request whose transaction id is the order id, if one was made."""
        with self._db.session() as session:
            row = requests.by_transaction(session, protocol, order_id)
            return row.id if row is not None else None

    # -- authorizations (RFC 8555 §7.5) -------------------------------------------------

    def authorization(self, authz_id: str) -> AuthorizationDetail | None:
        with self._db.begin() as connection:
            return _authorization_detail(connection, authz_id)

    def deactivate_authorization(self, authz_id: str) -> AuthorizationDetail | None:
        """pending/valid → deactivated (RFC 8555 §7.5.2); None if it was in another state."""
        with self._db.begin() as connection:
            changed = store.fast_update_where(
                connection, "authz", authz_id,
                status=(AuthorizationStatus.PENDING.value, AuthorizationStatus.VALID.value),
                values={"status": AuthorizationStatus.DEACTIVATED.value})
            return _authorization_detail(connection, authz_id) if changed else None

    # -- challenges and their validation (RFC 8555 §7.5.1, §8) --------------------------

    def challenge(self, challenge_id: str) -> ChallengeDetail | None:
        with self._db.begin() as connection:
            return _challenge_detail(connection, challenge_id)

    def start_challenge(self, challenge_id: str, *, now: dt.datetime) -> Challenge | None:
        """pending → processing, due now; None if the challenge was not pending."""
        with self._db.begin() as connection:
            if not store.fast_update_where(
                    connection, "challenge", challenge_id, status=ChallengeStatus.PENDING.value,
                    values={"status": ChallengeStatus.PROCESSING.value, "next_attempt_at": now}):
                return None
            row = store.fast_challenge(connection, challenge_id)
            return _challenge(row) if row is not None else None

    def due_challenges(self, *, now: dt.datetime) -> list[str]:
        with self._db.session() as session:
            return store.due_challenges(session, now=now)

    def claim_validation(self, challenge_id: str, *, now: dt.datetime,
                         lease_until: dt.datetime) -> ValidationJob | None:
        """Take the lease on a processing challenge (one worker validates it)."""
        with self._db.begin() as connection:
            if not store.fast_claim_challenge(connection, challenge_id, now=now,
                                              lease_until=lease_until):
                return None
            detail = _challenge_detail(connection, challenge_id)
            if detail is None:
                return None
            order = store.fast_order(connection, detail.authorization.order_id)
            account = store.fast_account(connection, detail.authorization.account_id)
            if order is None or account is None:
                return None
            return ValidationJob(detail.challenge, detail.authorization, _order(order),
                                 _account(account))

    def retry_validation(self, challenge_id: str, *, attempts: int, detail: str,
                         next_attempt_at: dt.datetime) -> None:
        """Release the lease; the sweep tries again at ``next_attempt_at``."""
        with self._db.begin() as connection:
            store.fast_update(connection, "challenge", challenge_id, lease_until=None,
                              attempts=attempts, detail=detail, next_attempt_at=next_attempt_at)

    def finish_validation(self, result: ValidationResult, *, now: dt.datetime) -> None:
        """The challenge and its authorization valid or invalid, with the audit event."""
        with self._db.begin() as connection:
            if result.error is None:
                store.fast_update(connection, "challenge", result.challenge_id,
                                  status=ChallengeStatus.VALID.value, validated=now, error=None,
                                  lease_until=None, attempts=result.attempts)
                store.fast_update(connection, "authz", result.authorization_id,
                                  status=AuthorizationStatus.VALID.value)
            else:
                store.fast_update(connection, "challenge", result.challenge_id,
                                  status=ChallengeStatus.INVALID.value, next_attempt_at=None,
                                  lease_until=None, attempts=result.attempts,
                                  error=_json(result.error))
                store.fast_update(connection, "authz", result.authorization_id,
                                  status=AuthorizationStatus.INVALID.value)
            audit.record(connection, at=now, actor=f"acme-account:{result.account_id}",
                         action="acme.validation",
                         outcome="invalid" if result.error is not None else "valid",
                         profile=result.profile, reason=result.reason, challenge=result.kind,
                         identifier=result.identifier)

    # -- the inventory, for download, revokeCert and renewalInfo ------------------------

    def certificate(self, serial: str) -> AcmeCertificate | None:
        with self._db.session() as session:
            row = certificates.get(session, serial)
            if row is None:
                return None
            return AcmeCertificate(
                row.serial, row.der, tuple(certificates.chain_of(row)), row.profile, row.protocol,
                row.principal_id, row.status == certificates.CertificateStatus.REVOKED,
                row.replaced_by_serial, row.not_before, row.not_after)


class _Refused(Exception):
    def __init__(self, refusal: AccountRefusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


class _Values:
    """Attribute access to the values of a row just inserted."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _json(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None


def _order_state(connection: Connection, order_id: str) -> OrderState | None:
    row = store.fast_order(connection, order_id)
    if row is None:
        return None
    return OrderState(_order(row), tuple(_summary(a) for a in
                                         store.fast_authz_states(connection, order_id)))


def _authorization_detail(connection: Connection, authz_id: str) -> AuthorizationDetail | None:
    row = store.fast_authorization(connection, authz_id)
    if row is None:
        return None
    return AuthorizationDetail(_authorization(row), tuple(
        _challenge(c) for c in store.fast_challenges(connection, authz_id)))


def _challenge_detail(connection: Connection, challenge_id: str) -> ChallengeDetail | None:
    row = store.fast_challenge(connection, challenge_id)
    if row is None:
        return None
    authz = store.fast_authorization(connection, row.authorization_id)
    if authz is None:
        return None
    return ChallengeDetail(_challenge(row), _authorization(authz))
