"""The admin API's one mapping from error kinds to HTTP statuses."""

from __future__ import annotations

import pytest

from gateway.admin.errors import AdminError, iso_datetime
from gateway.errors import ErrorKind, GatewayError, http_status


def test_every_error_kind_has_the_cores_status() -> None:
    assert all(AdminError.of(GatewayError(k, "why")).status == http_status(k) for k in ErrorKind)


# UNSUPPORTED (501) is the backend's inability, not the caller's fault.
@pytest.mark.parametrize("kind", [k for k in ErrorKind if k not in (
    ErrorKind.INTERNAL, ErrorKind.BACKEND_UNAVAILABLE, ErrorKind.UNSUPPORTED)])
def test_client_caused_kinds_are_4xx(kind: ErrorKind) -> None:
    error = AdminError.of(GatewayError(kind, "why"))
    assert 400 <= error.status < 500
    assert (error.error, error.detail) == (kind.value, "why")


def test_retry_after_is_passed_on() -> None:
    error = AdminError.of(GatewayError(ErrorKind.RATE_LIMITED, "slow down", retry_after=30))
    assert error.status == 429 and error.headers == {"Retry-After": "30"}


@pytest.mark.parametrize("text", ["2030-01-31T00:00:00Z", "2030-01-31T00:00:00.5+02:00"])
def test_rfc3339_accepted(text: str) -> None:
    assert iso_datetime(text) == text


@pytest.mark.parametrize("text", ["0.5", "1700000000", "2030-01-31", "2030-01-31T00:00:00", 5])
def test_non_rfc3339_refused(text: object) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        iso_datetime(text)
