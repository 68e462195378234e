"""JSON renderings of ACME objects (RFC 8555 §7.1.2-§7.1.4, §8) and order state rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from gateway.store import acme as store
from gateway.store.acme import AccountView
from gateway.store.acme_tables import (
    AcmeAccountRow,
    AcmeOrderRow,
)
from protocols.acme.service import Directory


def timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z, as clients parse it."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def account_json(directory: Directory, row: AcmeAccountRow | AccountView) -> dict[str, Any]:
    body: dict[str, Any] = {"status": row.status, "contact": list(row.contact or []),
                            "orders": directory.url("acct", row.id, "orders"),
                            "termsOfServiceAgreed": bool(row.tos_agreed)}
    if row.eab_kid:
        body["externalAccountBinding"] = {"kid": row.eab_kid}
    return body


def challenge_json(directory: Directory, row: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": row.type, "url": directory.url("chall", row.id),
                            "token": row.token, "status": row.status}
    if row.validated:
        body["validated"] = timestamp(row.validated)
    if row.error:
        body["error"] = row.error
    return body


def authz_json(directory: Directory, row: Any,
               challenges: list[Any], now: dt.datetime) -> dict[str, Any]:
    status = row.status
    if status in ("pending", "valid") and row.expires <= now:
        status = "expired"
    body: dict[str, Any] = {
        "identifier": {"type": row.identifier_type, "value": row.identifier_value},
        "status": status, "expires": timestamp(row.expires),
        "challenges": [challenge_json(directory, c) for c in challenges
                       if status != "valid" or c.status == "valid"],
    }
    if row.wildcard:
        body["wildcard"] = True
    return body


def order_json(directory: Directory, row: Any,
               authz_ids: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": row.status, "expires": timestamp(row.expires),
        "identifiers": row.identifiers,
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
        body["error"] = row.error
    if row.status == "valid":
        body["certificate"] = directory.url("cert", row.id)
    return body


def order_transition(status: str, expires: dt.datetime, authzs: list[Any],
                     now: dt.datetime) -> tuple[str, dict[str, Any] | None] | None:
    """RFC 8555 §7.1.6: the order's new (status, error) from its authorizations, or None."""
    new: tuple[str, dict[str, Any] | None] | None = None
    if status == "pending":
        statuses = [a.status for a in authzs]
        if any(s in ("invalid", "deactivated", "revoked") for s in statuses):
            return "invalid", _failed(authzs)
        if statuses and all(s == "valid" for s in statuses):
            new, status = ("ready", None), "ready"
    if status in ("pending", "ready") and expires <= now:
        return "invalid", {"type": "urn:ietf:params:acme:error:malformed",
                           "detail": "the order expired", "status": 400}
    return new


def refresh_order(session: Session, row: AcmeOrderRow, now: dt.datetime) -> list[str]:
    """Bring a pending/ready order's status in line with its authorizations (§7.1.6).

    Returns the authorization ids, in order.
    """
    authzs = store.authorizations(session, row.id)
    change = order_transition(row.status, row.expires, authzs, now)
    if change is not None:
        row.status, row.error, row.updated_at = change[0], change[1], now
    return [a.id for a in authzs]


def _failed(authzs: list[Any]) -> dict[str, Any]:
    return {"type": "urn:ietf:params:acme:error:unauthorized",
            "detail": "an authorization of the order failed", "status": 403,
            "subproblems": [{"type": "urn:ietf:params:acme:error:unauthorized",
                             "detail": f"authorization is {a.status}",
                             "identifier": {"type": a.identifier_type,
                                            "value": a.identifier_value}}
                            for a in authzs if a.status != "valid"]}
