"""The ACME state port: each method one transaction, typed values, guarded state changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.services.acme import AcmeState
from gateway.services.acme_model import (
    Account,
    AccountRefusal,
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    KeyInUse,
    LimitExceeded,
    NewAccount,
    NewAuthorization,
    NewOrder,
    OrderChange,
    OrderLimits,
    OrderState,
    OrderStatus,
    ValidationResult,
)
from gateway.store.db import Database

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
LIFE = dt.timedelta(minutes=5)


@pytest.fixture
def state(database: Database, tmp_path: Path) -> AcmeState:
    return AcmeState(database, tmp_path)


def _account(state: AcmeState, thumbprint: str = "t1") -> Account:
    created = state.create_account(NewAccount("default", thumbprint, {"kty": "EC"}, (), True),
                                   eab_key=None, now=NOW)
    assert isinstance(created, Account)
    return created


def _order(state: AcmeState, account: Account, *names: str,
           per_identifier: int = 10) -> OrderState | LimitExceeded:
    new = NewOrder(account.id, "default", "default",
                   tuple({"type": "dns", "value": n} for n in names), None, None, NOW + LIFE,
                   NOW + LIFE, None,
                   tuple(NewAuthorization("dns", n, False, ("http-01",)) for n in names))
    return state.create_order(new, limits=OrderLimits(NOW - LIFE, 10, per_identifier, names),
                              now=NOW)


def test_accounts(state: AcmeState) -> None:
    account = _account(state)
    assert account.status is AccountStatus.VALID
    assert state.account_by_key("default", "t1") == account
    assert state.account_by_key("other", "t1") is None
    again = state.create_account(NewAccount("default", "t1", {"kty": "EC"}, (), True),
                                 eab_key=None, now=NOW)
    assert again is AccountRefusal.KEY_IN_USE
    other = _account(state, "t2")
    assert state.change_account_key(account.id, profile="default", jwk={"kty": "OKP"},
                                    thumbprint="t2") == KeyInUse(other.id)
    changed = state.change_account_key(account.id, profile="default", jwk={"kty": "OKP"},
                                       thumbprint="t3")
    assert isinstance(changed, Account) and changed.jwk == {"kty": "OKP"}
    updated = state.update_account(account.id, contact=["mailto:a@b.test"], deactivate=True)
    assert updated is not None and updated.status is AccountStatus.DEACTIVATED
    assert updated.contact == ("mailto:a@b.test",)


def test_nonce_exchange_is_single_use(state: AcmeState) -> None:
    nonce = state.issue_nonce(now=NOW, lifetime=LIFE)
    fresh = state.exchange_nonce(nonce, now=NOW, lifetime=LIFE)
    assert fresh is not None and fresh != nonce
    assert state.exchange_nonce(nonce, now=NOW, lifetime=LIFE) is None


def test_order_lifecycle(state: AcmeState) -> None:
    account = _account(state)
    created = _order(state, account, "b.test", "a.test")
    assert isinstance(created, OrderState)
    order_id = created.order.id
    assert created.order.status is OrderStatus.PENDING
    assert [a.identifier_value for a in created.authorizations] == ["a.test", "b.test"]
    assert _order(state, account, "a.test", per_identifier=1) == LimitExceeded("a.test")

    authz_id = created.authorizations[0].id
    detail = state.authorization(authz_id)
    assert detail is not None and detail.challenges[0].status is ChallengeStatus.PENDING
    challenge_id = detail.challenges[0].id
    started = state.start_challenge(challenge_id, now=NOW)
    assert started is not None and started.status is ChallengeStatus.PROCESSING
    assert state.start_challenge(challenge_id, now=NOW) is None  # only from pending
    job = state.claim_validation(challenge_id, now=NOW, lease_until=NOW + LIFE)
    assert job is not None and job.order.id == order_id and job.account.id == account.id
    assert state.claim_validation(challenge_id, now=NOW, lease_until=NOW + LIFE) is None
    state.finish_validation(ValidationResult(challenge_id, authz_id, account.id, "default",
                                             "http-01", "dns:a.test", 1, None, ""), now=NOW)
    after = state.authorization(authz_id)
    assert after is not None and after.authorization.status is AuthorizationStatus.VALID

    # A change applies only to the status it was decided from.
    moved = state.apply_order_change(order_id, expected=OrderStatus.READY,
                                     change=OrderChange(OrderStatus.INVALID), now=NOW)
    assert moved is not None and moved.order.status is OrderStatus.PENDING
    state.apply_order_change(order_id, expected=OrderStatus.PENDING,
                             change=OrderChange(OrderStatus.READY), now=NOW)
    assert state.claim_for_finalize(order_id, now=NOW)
    assert not state.claim_for_finalize(order_id, now=NOW)  # one finalize only
    valid = state.mark_order_valid(order_id, request_id="r1", certificate_serial="ab", now=NOW)
    assert valid is not None and valid.order.status is OrderStatus.VALID
    assert state.account_order_ids(account.id, [OrderStatus.VALID], limit=10) == [order_id]

    assert state.deactivate_authorization(authz_id) is not None  # valid → deactivated
    assert state.deactivate_authorization(authz_id) is None  # not again
