"""JSON renderings of ACME objects (RFC 8555 §7.1.2-§7.1.4, §8) and order state rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from gateway.services.acme_model import (
    Account,
    AuthorizationDetail,
    AuthorizationStatus,
    AuthorizationSummary,
    Challenge,
    ChallengeStatus,
    Order,
    OrderChange,
    OrderStatus,
)
from protocols.acme.service import Directory


def timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z, as clients parse it."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def account_json(directory: Directory, row: Account) -> dict[str, Any]:
    body: dict[str, Any] = {"status": row.status, "contact": list(row.contact or []),
                            "orders": directory.url("acct", row.id, "orders"),
                            "termsOfServiceAgreed": bool(row.tos_agreed)}
    if row.eab_kid:
        body["externalAccountBinding"] = {"kid": row.eab_kid}
    return body


def challenge_json(directory: Directory, row: Challenge) -> dict[str, Any]:
    body: dict[str, Any] = {"type": row.type, "url": directory.url("chall", row.id),
                            "token": row.token, "status": row.status}
    if row.validated:
        body["validated"] = timestamp(row.validated)
    if row.error:
        body["error"] = dict(row.error)
    return body


def authz_json(directory: Directory, detail: AuthorizationDetail,
               now: dt.datetime) -> dict[str, Any]:
    row = detail.authorization
    status = row.status
    if status in (AuthorizationStatus.PENDING, AuthorizationStatus.VALID) and row.expires <= now:
        status = AuthorizationStatus.EXPIRED
    body: dict[str, Any] = {
        "identifier": {"type": row.identifier_type, "value": row.identifier_value},
        "status": status.value, "expires": timestamp(row.expires),
        "challenges": [challenge_json(directory, c) for c in detail.challenges
                       if status is not AuthorizationStatus.VALID
                       or c.status is ChallengeStatus.VALID],
    }
    if row.wildcard:
        body["wildcard"] = True
    return body


def order_json(directory: Directory, row: Order,
               authz_ids: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": row.status.value, "expires": timestamp(row.expires),
        "identifiers": [dict(i) for i in row.identifiers],
        "authorizations": [directory.url("authz", a) for a in authz_ids],
        "finalize": directory.url("order", row.id, "finalize"),
    }
    if row.not_before:
        body["notBefore"] = timestamp(row.not_before)
    if row.not_after:
        body["notAfter"] = timestamp(row.not_after)
    if row.profile != directory.profile:
        body["profile"] = row.profile
    if row.replaces:
        body["replaces"] = row.replaces
    if row.error:
        body["error"] = dict(row.error)
    if row.status is OrderStatus.VALID:
        body["certificate"] = directory.url("cert", row.id)
    return body


_FAILED = (AuthorizationStatus.INVALID, AuthorizationStatus.DEACTIVATED,
           AuthorizationStatus.REVOKED)


def order_transition(status: OrderStatus, expires: dt.datetime,
                     authzs: Sequence[AuthorizationSummary],
                     now: dt.datetime) -> OrderChange | None:
    """RFC 8555 §7.1.6: the order's new state from its authorizations, or None."""
    new: OrderChange | None = None
    if status is OrderStatus.PENDING:
        statuses = [a.status for a in authzs]
        if any(s in _FAILED for s in statuses):
            return OrderChange(OrderStatus.INVALID, _failed(authzs))
        if statuses and all(s is AuthorizationStatus.VALID for s in statuses):
            new, status = OrderChange(OrderStatus.READY), OrderStatus.READY
    if status in (OrderStatus.PENDING, OrderStatus.READY) and expires <= now:
        return OrderChange(OrderStatus.INVALID, {"type": "urn:ietf:params:acme:error:malformed",
                                                 "detail": "the order expired", "status": 400})
    return new


def _failed(authzs: Sequence[AuthorizationSummary]) -> dict[str, Any]:
    return {"type": "urn:ietf:params:acme:error:unauthorized",
            "detail": "an authorization of the order failed", "status": 403,
            "subproblems": [{"type": "urn:ietf:params:acme:error:unauthorized",
                             "detail": f"authorization is {a.status}",
                             "identifier": {"type": a.identifier_type,
                                            "value": a.identifier_value}}
                            for a in authzs if a.status is not AuthorizationStatus.VALID]}
