"""Orders and authorizations: newOrder (RFC 8555 §7.4), order and authz resources."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.model import Identifier, IdentifierType
from gateway.policy import name_allowed
from gateway.services.acme_model import (
    Account,
    AuthorizationStatus,
    ChallengeStatus,
    LimitExceeded,
    NewAuthorization,
    NewOrder,
    Order,
    OrderLimits,
    OrderStatus,
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
from protocols.acme.service import AcmeService, Directory, Reply, Signed, check_owner


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


def _limits(directory: Directory, found: list[Identifier], now: dt.datetime) -> OrderLimits:
    settings = directory.settings
    return OrderLimits(now - settings.rate_window, settings.orders_per_account,
                       settings.orders_per_identifier, tuple(i.value for i in found))


def _rate_limited(directory: Directory, found: list[Identifier],
                  exceeded: LimitExceeded) -> AcmeProblem:
    settings = directory.settings
    window = int(settings.rate_window.total_seconds())
    if exceeded.identifier is None:
        return AcmeProblem(ProblemType.RATE_LIMITED,
                           f"more than {settings.orders_per_account} orders for this account in "
                           f"{window}s", 429, retry_after=max(1, window // 10))
    identifier = next(i for i in found if i.value == exceeded.identifier)
    return AcmeProblem(ProblemType.RATE_LIMITED,
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
        renewal.replaced_serial(service.state, replaces, account.id, profile)
    expires = now + service.server.order_lifetime
    new = NewOrder(
        account_id=account.id, profile=profile, directory=directory.profile,
        identifiers=tuple(ids.identifier_json(i) for i in found), not_before=not_before,
        not_after=not_after, expires=expires,
        authorization_expires=min(now + service.server.authorization_lifetime, expires),
        replaces=replaces, authorizations=tuple(
            NewAuthorization(identifier.type.value, identifier.value.removeprefix("*."),
                             identifier.value.startswith("*."),
                             tuple(_challenge_types(directory, identifier)))
            for identifier in found))
    created = service.state.create_order(new, limits=_limits(directory, found, now), now=now)
    if isinstance(created, LimitExceeded):
        raise _rate_limited(directory, found, created)
    order_id = created.order.id
    body = order_json(directory, created.order, [a.id for a in created.authorizations])
    return Reply(body, 201, location=directory.url("order", order_id))


def _must_account(signed: Signed) -> Account:
    if signed.account is None:
        raise malformed("this request must be signed with the account key ('kid')")
    return signed.account


def owned_order(service: AcmeService, order_id: str, account: Account) -> Order:
    """The order, if it exists and belongs to ``account``."""
    order = service.state.order(order_id)
    if order is None:
        raise not_found("order")
    check_owner(order.account_id, account, "order")
    return order


def get_authz(service: AcmeService, directory: Directory, signed: Signed, authz_id: str) -> Reply:
    account = _must_account(signed)
    now = service.now()
    detail = service.state.authorization(authz_id)
    if detail is None:
        raise not_found("authorization")
    check_owner(detail.authorization.account_id, account, "authorization")
    if not signed.jws.post_as_get:
        payload = signed.jws.payload_json()
        if payload.get("status") != AuthorizationStatus.DEACTIVATED:
            raise malformed("an authorization can only be updated to 'deactivated'")
        if detail.authorization.status not in (AuthorizationStatus.PENDING,
                                               AuthorizationStatus.VALID):
            raise unauthorized(f"the authorization is {detail.authorization.status}")
        deactivated = service.state.deactivate_authorization(authz_id)  # RFC 8555 §7.5.2
        if deactivated is None:  # it changed state meanwhile
            current = service.state.authorization(authz_id)
            status = current.authorization.status if current else "gone"
            raise unauthorized(f"the authorization is {status}")
        detail = deactivated
    retry = 1 if any(c.status is ChallengeStatus.PROCESSING for c in detail.challenges) else None
    return Reply(authz_json(directory, detail, now), retry_after=retry)


def get_order(service: AcmeService, directory: Directory, signed: Signed, order_id: str) -> Reply:
    if not signed.jws.post_as_get:
        raise malformed("an order is read with POST-as-GET (empty payload)")
    account = _must_account(signed)
    now = service.now()
    state = service.state.order_state(order_id)
    if state is None:
        raise not_found("order")
    check_owner(state.order.account_id, account, "order")
    change = order_transition(state.order.status, state.order.expires, state.authorizations, now)
    if change is not None:
        state = service.state.apply_order_change(order_id, expected=state.order.status,
                                                 change=change, now=now) or state
    row = state.order
    body = order_json(directory, row, [a.id for a in state.authorizations])
    return Reply(body, retry_after=1 if row.status is OrderStatus.PROCESSING else None)


# The orders an account's list shows (RFC 8555 §7.1.2.1): not the invalid ones.
_LISTED = (OrderStatus.PENDING, OrderStatus.READY, OrderStatus.PROCESSING, OrderStatus.VALID)


def list_orders(service: AcmeService, directory: Directory, signed: Signed, account_id: str) -> Reply:
    account = _must_account(signed)
    if account.id != account_id:
        raise unauthorized("the orders list belongs to another account")
    order_ids = service.state.account_order_ids(account.id, _LISTED, limit=1000)
    return Reply({"orders": [directory.url("order", order_id) for order_id in order_ids]})
