"""Order state transitions (RFC 8555 §7.1.6) decided from the authorizations."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.services.acme_model import AuthorizationStatus, AuthorizationSummary, OrderStatus
from protocols.acme.resources import order_transition

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)


def authz(status: str, identifier_type: str = "dns",
          identifier_value: str = "a.test") -> AuthorizationSummary:
    return AuthorizationSummary("z", AuthorizationStatus(status), identifier_type,
                                identifier_value)


def _authzs(*statuses: str) -> list[AuthorizationSummary]:
    return [authz(s) for s in statuses]


@pytest.mark.parametrize(("status", "authzs", "expected"), [
    ("pending", ["pending", "valid"], None),
    ("pending", ["valid", "valid"], "ready"),
    ("pending", ["valid", "invalid"], "invalid"),
    ("pending", ["pending", "deactivated"], "invalid"),
    ("ready", ["valid"], None),
    ("processing", ["valid"], None),
    ("valid", ["valid"], None),
    ("invalid", ["invalid"], None),
])
def test_transitions(status: str, authzs: list[str], expected: str | None) -> None:
    change = order_transition(OrderStatus(status), LATER, _authzs(*authzs), NOW)
    assert (change.status if change else None) == expected


def test_failed_authorization_gives_subproblems() -> None:
    change = order_transition(OrderStatus.PENDING, LATER,
                              [authz("valid"),
                               authz("invalid", "ip", "127.0.0.1")], NOW)
    assert change is not None
    status, error = change.status, change.error
    assert status == "invalid" and error is not None
    assert error["subproblems"] == [{
        "type": "urn:ietf:params:acme:error:unauthorized", "detail": "authorization is invalid",
        "identifier": {"type": "ip", "value": "127.0.0.1"}}]


@pytest.mark.parametrize("status", ["pending", "ready"])
def test_expired_orders_become_invalid(status: str) -> None:
    change = order_transition(OrderStatus(status), NOW - dt.timedelta(seconds=1),
                              _authzs("pending"), NOW)
    assert change is not None and change.status == "invalid"
    assert "expired" in (change.error or {})["detail"]
    assert order_transition(OrderStatus.VALID, NOW - dt.timedelta(days=9),
                            _authzs("valid"), NOW) is None


def test_states_reject_unknown_names() -> None:
    with pytest.raises(ValueError):
        OrderStatus("done")
    with pytest.raises(ValueError):
        AuthorizationStatus("Valid")
