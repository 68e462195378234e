"""What an edge may tell a client: generic text for internal and CA-side details."""

from __future__ import annotations

import logging

import pytest

from gateway.errors import ErrorKind, GatewayError, ca_refusal, client_detail


@pytest.mark.parametrize(("error", "generic"), [
    (GatewayError(ErrorKind.INTERNAL, "KeyError at https://vault.internal:8200/v1/pki"),
     "internal error"),
    (GatewayError(ErrorKind.BACKEND_UNAVAILABLE, "connect to https://vault.internal:8200"),
     "the CA is temporarily unavailable"),
    (GatewayError(ErrorKind.BACKEND_REJECTED,
                  ca_refusal("role 'pki-int/roles/web' does not allow; set 'allowed_domains'")),
     "the CA refused the request"),
])
def test_internal_details_stay_in_the_log(error: GatewayError, generic: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gatehouse.errors"):
        shown = client_detail(error)
    assert shown.startswith(generic) and "(reference " in shown
    assert "vault.internal" not in shown and "allowed_domains" not in shown
    reference = shown.rsplit("reference ", 1)[1].rstrip(")")
    logged = [r for r in caplog.records if getattr(r, "reference", None) == reference]
    assert logged and logged[0].error == error.detail  # type: ignore[attr-defined]


@pytest.mark.parametrize("error", [
    GatewayError(ErrorKind.POLICY_DENIED, "subject attribute O is not allowed by this profile"),
    GatewayError(ErrorKind.BACKEND_REJECTED, "the CA issued a certificate that does not match "
                                             "the policy decision; it was refused and not delivered"),
    GatewayError(ErrorKind.BAD_CSR, "the CSR's signature does not verify"),
])
def test_client_safe_details_pass_unchanged(error: GatewayError) -> None:
    assert client_detail(error) == error.detail
