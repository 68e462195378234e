"""One error rule per edge: every core error kind maps on every edge.

The HTTP edges (EST, admin API, console, the generic app handler) take their status from
the core's ``EDGE_RULES``; SCEP (failInfo or PENDING) and ACME (problem type and status)
map every kind once, in their own vocabulary.  A kind added to ``ErrorKind`` without a
row in each of these fails here.
"""

from __future__ import annotations

import json

import pytest

from gateway.admin.errors import AdminError
from gateway.app import generic_error_response
from gateway.console.actions import refused
from gateway.errors import EDGE_RULES, ErrorKind, GatewayError, http_status
from protocols.acme.problems import ACME_STATUS, ProblemType, from_gateway_error, kinds_covered
from protocols.est.cmc import CMCFailInfo
from protocols.est.errors import cmc_fail_info, est_error
from protocols.scep.errors import fail_info_for
from protocols.scep.vocabulary import FailInfo

KINDS = list(ErrorKind)
SECRET = "https://vault.internal:8200/v1/pki secret-marker"
# Kinds whose detail a client never sees (docs/security.md, rule 10).
WITHHELD = {ErrorKind.INTERNAL, ErrorKind.BACKEND_UNAVAILABLE}


def test_the_core_table_covers_every_kind() -> None:
    assert set(EDGE_RULES) == set(ErrorKind)
    assert all(400 <= rule.status < 600 for rule in EDGE_RULES.values())
    assert {k for k, rule in EDGE_RULES.items() if rule.generic_detail} == WITHHELD


def test_the_statuses_decided_once() -> None:
    """The kinds the old per-edge maps disagreed on."""
    assert http_status(ErrorKind.UNSUPPORTED) == 501  # was 400 in the admin API and app
    assert http_status(ErrorKind.BACKEND_REJECTED) == 403  # was 422 admin, 400 app
    assert http_status(ErrorKind.UNSUPPORTED_KEY) == 403  # was 400 in the admin API
    assert http_status(ErrorKind.POLICY_DENIED) == 403  # was 400 in the app
    assert http_status(ErrorKind.BACKEND_UNAVAILABLE) == 503


@pytest.mark.parametrize("kind", KINDS)
def test_est(kind: ErrorKind) -> None:
    status, _headers, body = est_error(GatewayError(kind, SECRET))
    assert status == http_status(kind)
    assert isinstance(cmc_fail_info(kind), CMCFailInfo)
    if kind in WITHHELD:
        assert b"secret-marker" not in body


@pytest.mark.parametrize("kind", KINDS)
def test_admin_api(kind: ErrorKind) -> None:
    error = AdminError.of(GatewayError(kind, "why"))
    assert (error.status, error.error, error.detail) == (http_status(kind), kind.value, "why")


@pytest.mark.parametrize("kind", KINDS)
def test_console(kind: ErrorKind) -> None:
    outcome = refused(GatewayError(kind, "why"))
    assert not outcome.ok and outcome.message == "why"  # operators see the detail


@pytest.mark.parametrize("kind", KINDS)
def test_generic_handler(kind: ErrorKind) -> None:
    response = generic_error_response(GatewayError(kind, SECRET))
    assert response.status_code == http_status(kind)
    body = json.loads(bytes(response.body))
    assert body["error"] == kind.value
    assert ("secret-marker" in body["detail"]) is (kind not in WITHHELD)


@pytest.mark.parametrize("kind", KINDS)
def test_scep_fail_info_or_pending(kind: ErrorKind) -> None:
    answer = fail_info_for(kind)
    assert isinstance(answer, FailInfo) or (answer is None and kind is ErrorKind.BACKEND_UNAVAILABLE)


@pytest.mark.parametrize("kind", KINDS)
def test_acme(kind: ErrorKind) -> None:
    problem = from_gateway_error(GatewayError(kind, SECRET))
    assert isinstance(problem.type, ProblemType) and kind in kinds_covered()
    assert problem.status == ACME_STATUS.get(kind, http_status(kind))
    assert ("secret-marker" in problem.detail) is (kind not in WITHHELD)


def test_a_backend_outage_is_503_with_retry_after_on_every_http_edge() -> None:
    error = GatewayError(ErrorKind.BACKEND_UNAVAILABLE, "down")
    status, headers, _ = est_error(error)
    assert status == 503 and (b"retry-after", b"30") in headers
    admin = AdminError.of(error)
    assert admin.status == 503 and admin.headers == {"Retry-After": "30"}
    generic = generic_error_response(error)
    assert generic.status_code == 503 and generic.headers["retry-after"] == "30"
    problem = from_gateway_error(error)
    assert problem.status == 503 and problem.retry_after == 30
    assert fail_info_for(ErrorKind.BACKEND_UNAVAILABLE) is None  # SCEP: PENDING, poll again
