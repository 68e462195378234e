"""The EST error mapping covers every core error kind, in HTTP and in CMC."""

from __future__ import annotations

import pytest

from gateway.errors import ErrorKind, GatewayError, http_status
from protocols.est.cmc import CMCFailInfo
from protocols.est.errors import CMC_FAIL_INFO, cmc_fail_info, est_error


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_every_kind_has_an_http_status_and_a_cmc_fail_info(kind: ErrorKind) -> None:
    status, _headers, body = est_error(GatewayError(kind, "why\nnot"))
    assert status == http_status(kind) and 400 <= status < 600
    assert body.endswith(b"\n") and body.count(b"\n") == 1
    assert isinstance(cmc_fail_info(kind), CMCFailInfo)
    assert set(CMC_FAIL_INFO) == set(ErrorKind)


def test_specific_answers() -> None:
    status, headers, _ = est_error(GatewayError(ErrorKind.UNAUTHORIZED, "no"), realm="r")
    assert status == 401 and (b"www-authenticate", b'Basic realm="r", charset="UTF-8"') in headers
    assert est_error(GatewayError(ErrorKind.POLICY_DENIED, "x"))[0] == 403
    assert est_error(GatewayError(ErrorKind.MALFORMED, "x"))[0] == 400
    assert est_error(GatewayError(ErrorKind.PAYLOAD_TOO_LARGE, "x"))[0] == 413
    status, headers, _ = est_error(GatewayError(ErrorKind.BACKEND_UNAVAILABLE, "x",
                                                retry_after=7))
    assert status == 503 and (b"retry-after", b"7") in headers
    status, _, body = est_error(GatewayError(ErrorKind.INTERNAL, "secret detail"))
    assert status == 500 and b"secret" not in body
