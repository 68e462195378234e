"""Order state transitions (RFC 8555 §7.1.6) decided from the authorizations."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from protocols.acme.resources import order_transition

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)


@dataclass
class Authz:
    status: str
    identifier_type: str = "dns"
    identifier_value: str = "a.test"


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
    change = order_transition(status, LATER, [Authz(s) for s in authzs], NOW)
    assert (change[0] if change else None) == expected


def test_failed_authorization_gives_subproblems() -> None:
    change = order_transition("pending", LATER, [Authz("valid"),
                                                 Authz("invalid", "ip", "127.0.0.1")], NOW)
    assert change is not None
    status, error = change
    assert status == "invalid" and error is not None
    assert error["subproblems"] == [{
        "type": "urn:ietf:params:acme:error:unauthorized", "detail": "authorization is invalid",
        "identifier": {"type": "ip", "value": "127.0.0.1"}}]


@pytest.mark.parametrize("status", ["pending", "ready"])
def test_expired_orders_become_invalid(status: str) -> None:
    change = order_transition(status, NOW - dt.timedelta(seconds=1), [Authz("pending")], NOW)
    assert change is not None and change[0] == "invalid"
    assert "expired" in (change[1] or {})["detail"]
    assert order_transition("valid", NOW - dt.timedelta(days=9), [Authz("valid")], NOW) is None
