"""Orders and authorizations: newOrder (RFC 8555 §7.4), order and authz resources."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from gateway.model import Identifier, IdentifierType
from gateway.policy import name_allowed
from gateway.store import acme as store
from gateway.store.acme import AccountView
from gateway.store.acme_tables import (
    AcmeOrderRow,
)
from protocols.acme import identifiers as ids
from protocols.acme import renewal
from protocols.acme.addresses import parse_allow
from protocols.acme.problems import (
    AcmeProblem,
    ProblemType,
    Subproblem,
    malformed,
    not_found,
    unauthorized,
)
from protocols.acme.resources import authz_json, order_json, order_transition
from protocols.acme.service import AcmeService, Directory, Reply, Signed


def _time(value: Any, what: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise malformed(f"'{what}' must be an RFC 3339 timestamp")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise malformed(f"'{what}' is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise malformed(f"'{what}' needs a time zone")
    return parsed.astimezone(dt.UTC)


def _order_profile(service: AcmeService, directory: Directory, requested: Any) -> str:
    """The ACME profiles draft: the order's ``profile`` selects an advertised profile."""
    if requested is None:
        return directory.profile
    if not isinstance(requested, str):
        raise malformed("'profile' must be a string")
    offered = offered_profiles(service, directory)
    if requested not in offered:
        raise AcmeProblem(ProblemType.INVALID_PROFILE,
                          f"profile {requested!r} is not offered here (offered: "
                          f"{', '.join(sorted(offered))})")
    return requested


def offered_profiles(service: AcmeService, directory: Directory) -> dict[str, str]:
    offered = {directory.profile: f"Gatehouse profile {directory.profile!r}"}
    for name, description in directory.settings.profiles.items():
        profile = service.gateway.config.profiles.get(name)
        if profile is not None and profile.acme.enabled:
            offered[name] = description
    return offered


def _check_policy(service: AcmeService, profile: str, found: list[Identifier]) -> None:
    """Refuse identifiers the profile's SAN rules refuse, before any validation."""
    rules = service.gateway.config.profiles[profile].sans
    problems = []
    for identifier in found:
        value = identifier.value
        allowed = name_allowed(getattr(rules, identifier.type.value), value,
                               ip=identifier.type is IdentifierType.IP)
        if not allowed:
            problems.append(Subproblem(ProblemType.REJECTED_IDENTIFIER,
                                       f"{value} is not allowed by profile {profile!r}",
                                       ids.identifier_json(identifier)))
    if problems:
        raise AcmeProblem(ProblemType.REJECTED_IDENTIFIER,
                          "; ".join(p.detail for p in problems), subproblems=problems)


def _rate_limit(connection: Connection, directory: Directory, account_id: str,
                found: list[Identifier], now: dt.datetime) -> None:
    settings = directory.settings
    since = now - settings.rate_window
    window = int(settings.rate_window.total_seconds())
    if store.count_orders_since(connection, account_id, since) >= settings.orders_per_account:
        raise AcmeProblem(ProblemType.RATE_LIMITED,
                          f"more than {settings.orders_per_account} orders for this account in "
                          f"{window}s", 429, retry_after=max(1, window // 10))
    for identifier in found:
        if store.count_identifier_since(connection, identifier.value, since) >= \
                settings.orders_per_identifier:
            raise AcmeProblem(ProblemType.RATE_LIMITED,
                              f"more than {settings.orders_per_identifier} orders for "
                              f"{identifier.value} in {window}s", 429,
                              retry_after=max(1, window // 10),
                              subproblems=[Subproblem(ProblemType.RATE_LIMITED, "too many orders",
                                                      ids.identifier_json(identifier))])


def _challenge_types(directory: Directory, identifier: Identifier) -> list[str]:
    allowed: list[str] = list(directory.settings.challenges)
    if identifier.value.startswith("*."):
        allowed = [t for t in allowed if t == "dns-01"]  # RFC 8555 §7.1.3
    if identifier.type is IdentifierType.IP:
        allowed = [t for t in allowed if t != "dns-01"]  # RFC 8738 §7
    return allowed


def new_order(service: AcmeService, directory: Directory, signed: Signed) -> Reply:
    payload = signed.jws.payload_json()
    account = _must_account(signed)
    found = ids.parse_order_identifiers(payload.get("identifiers"),
                                        limit=directory.settings.max_identifiers,
                                        allow=parse_allow(service.server.validation_allow))
    profile = _order_profile(service, directory, payload.get("profile"))
    not_before = _time(payload.get("notBefore"), "notBefore")
    not_after = _time(payload.get("notAfter"), "notAfter")
    if (not_before or not_after) and not directory.settings.allow_validity_request:
        raise malformed("this profile does not accept notBefore/notAfter")
    if not_before and not_after and not_after <= not_before:
        raise malformed("notAfter must be later than notBefore")
    for identifier in found:
        if not _challenge_types(directory, identifier):
            raise AcmeProblem(ProblemType.REJECTED_IDENTIFIER,
                              f"no allowed challenge type can validate {identifier.value}"
                              + (" (wildcards need dns-01)" if identifier.value.startswith("*.")
                                 else ""),
                              subproblems=[Subproblem(ProblemType.REJECTED_IDENTIFIER,
                                                      "no challenge type",
                                                      ids.identifier_json(identifier))])
    _check_policy(service, profile, found)
    now = service.now()
    replaces = payload.get("replaces")
    if replaces is not None:
        with service.gateway.db.session() as session:
            renewal.replaced_serial(session, replaces, account.id, profile)
    expires = now + service.server.order_lifetime
    order_id = store.new_id()
    order = {"id": order_id, "account_id": account.id, "profile": profile,
             "directory": directory.profile, "status": "pending",
             "identifiers": [ids.identifier_json(i) for i in found], "not_before": not_before,
             "not_after": not_after, "expires": expires, "error": None, "replaces": replaces,
             "request_id": None, "certificate_serial": None, "created_at": now, "updated_at": now}
    authz_rows: list[dict[str, Any]] = []
    challenge_rows: list[dict[str, Any]] = []
    authz_expires = min(now + service.server.authorization_lifetime, expires)
    for identifier in found:
        authz_id = store.new_id()
        authz_rows.append({"id": authz_id, "order_id": order_id, "account_id": account.id,
                           "identifier_type": identifier.type.value,
                           "identifier_value": identifier.value.removeprefix("*."),
                           "wildcard": identifier.value.startswith("*."), "status": "pending",
                           "expires": authz_expires, "created_at": now})
        token = secrets.token_urlsafe(32)  # RFC 8555 §8.1: ≥128 bits of entropy
        for kind in _challenge_types(directory, identifier):
            challenge_rows.append({"id": store.new_id(), "authorization_id": authz_id,
                                   "type": kind, "token": token, "status": "pending",
                                   "validated": None, "error": None, "attempts": 0,
                                   "next_attempt_at": None, "lease_until": None, "detail": ""})
    with service.gateway.db.begin() as connection:
        _rate_limit(connection, directory, account.id, found, now)
        store.fast_insert(connection, "order", [order])
        store.fast_insert(connection, "authz", authz_rows)
        store.fast_insert(connection, "challenge", challenge_rows)
    authz_rows.sort(key=lambda a: str(a["identifier_value"]))
    body = order_json(directory, _Row(order), [str(a["id"]) for a in authz_rows])
    return Reply(body, 201, location=directory.url("order", order_id))


class _Row:
    """Attribute access to a dict, for rendering a row just inserted."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _must_account(signed: Signed) -> AccountView:
    if signed.account is None:
        raise malformed("this request must be signed with the account key ('kid')")
    return signed.account


def owned_order(session: Session, order_id: str, account: AccountView) -> AcmeOrderRow:
    order = store.order(session, order_id)
    if order is None:
        raise not_found("order")
    if order.account_id != account.id:
        raise unauthorized("the order belongs to another account")
    return order


def get_authz(service: AcmeService, directory: Directory, signed: Signed, authz_id: str) -> Reply:
    account = _must_account(signed)
    now = service.now()
    if signed.jws.post_as_get:  # the poll: read-only, through Core
        with service.gateway.db.begin() as connection:
            row = store.fast_authorization(connection, authz_id)
            if row is None:
                raise not_found("authorization")
            if row.account_id != account.id:
                raise unauthorized("the authorization belongs to another account")
            found = store.fast_challenges(connection, authz_id)
        retry = 1 if any(c.status == "processing" for c in found) else None
        return Reply(authz_json(directory, row, found, now), retry_after=retry)
    with service.gateway.db.session() as session:
        authz = store.authorization(session, authz_id)
        if authz is None:
            raise not_found("authorization")
        if authz.account_id != account.id:
            raise unauthorized("the authorization belongs to another account")
        if not signed.jws.post_as_get:
            payload = signed.jws.payload_json()
            if payload.get("status") != "deactivated":
                raise malformed("an authorization can only be updated to 'deactivated'")
            if authz.status not in ("pending", "valid"):
                raise unauthorized(f"the authorization is {authz.status}")
            authz.status = "deactivated"  # RFC 8555 §7.5.2
        challenges = store.challenges(session, authz.id)
        body = authz_json(directory, authz, challenges, now)
    retry = 1 if any(c.status == "processing" for c in challenges) else None
    return Reply(body, retry_after=retry)


def get_order(service: AcmeService, directory: Directory, signed: Signed, order_id: str) -> Reply:
    if not signed.jws.post_as_get:
        raise malformed("an order is read with POST-as-GET (empty payload)")
    account = _must_account(signed)
    now = service.now()
    with service.gateway.db.begin() as connection:
        row = store.fast_order(connection, order_id)
        if row is None:
            raise not_found("order")
        if row.account_id != account.id:
            raise unauthorized("the order belongs to another account")
        states = store.fast_authz_states(connection, order_id)
    change = order_transition(row.status, row.expires, states, now)
    if change is not None:
        with service.gateway.db.begin() as connection:
            store.fast_update(connection, "order", order_id, status=change[0], error=change[1],
                              updated_at=now)
            row = store.fast_order(connection, order_id)
    body = order_json(directory, row, [a.id for a in states])
    return Reply(body, retry_after=1 if row.status == "processing" else None)


def list_orders(service: AcmeService, directory: Directory, signed: Signed, account_id: str) -> Reply:
    account = _must_account(signed)
    if account.id != account_id:
        raise unauthorized("the orders list belongs to another account")
    from sqlalchemy import select

    with service.gateway.db.session() as session:
        rows = session.scalars(select(AcmeOrderRow.id).where(
            AcmeOrderRow.account_id == account.id,
            AcmeOrderRow.status.in_(("pending", "ready", "processing", "valid")))
            .order_by(AcmeOrderRow.created_at).limit(1000))
        urls = [directory.url("order", order_id) for order_id in rows]
    return Reply({"orders": urls})
