from __future__ import annotations

from gateway.errors import ErrorKind, GatewayError
from protocols.acme.problems import AcmeProblem, ProblemType, Subproblem, from_gateway_error, kinds_covered


def test_every_error_kind_has_a_problem_type() -> None:
    assert kinds_covered() == set(ErrorKind)
    for kind in ErrorKind:
        problem = from_gateway_error(GatewayError(kind, "x"))
        assert problem.to_json()["type"].startswith("urn:ietf:params:acme:error:")
        assert 400 <= problem.status < 600


def test_rate_limited_has_retry_after_and_policy_is_rejected_identifier() -> None:
    problem = from_gateway_error(GatewayError(ErrorKind.RATE_LIMITED, "slow down"))
    assert problem.status == 429 and problem.retry_after
    assert from_gateway_error(GatewayError(ErrorKind.POLICY_DENIED, "no")).type \
        is ProblemType.REJECTED_IDENTIFIER


def test_subproblems_rendered() -> None:
    problem = AcmeProblem(ProblemType.REJECTED_IDENTIFIER, "bad", subproblems=[
        Subproblem(ProblemType.REJECTED_IDENTIFIER, "nope", {"type": "dns", "value": "a.test"})])
    body = problem.to_json()
    assert body["subproblems"][0]["identifier"] == {"type": "dns", "value": "a.test"}
    assert body["subproblems"][0]["type"] == "urn:ietf:params:acme:error:rejectedIdentifier"
