"""The whole core in-process: pipeline + internal CA + revocation, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp

from gateway.clock import FixedClock
from gateway.config import GatehouseConfig
from gateway.model import (
    EnrollmentRequest,
    Operation,
    Principal,
    PrincipalKind,
    Protocol,
    RevocationReason,
)
from gateway.runtime import Gateway
from gateway.store.db import Database
from tests.support.pki import csr_der, make_csr


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def gateway(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from ca_backends.internal import InternalCaConfig, init_from_config

    monkeypatch.setenv("GATEHOUSE_CA_PASSPHRASE", "test-passphrase-generated-in-test")
    config = GatehouseConfig.model_validate({
        "database": {"url": database.engine.url.render_as_string(hide_password=False)},
        "backends": {"internal": {"type": "internal", "directory": "ca"}},
        "profiles": {"default": {"backend": "internal"}},
    })
    clock = FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    entry = config.backends["internal"]
    assert isinstance(entry, InternalCaConfig)
    init_from_config(entry, tmp_path, clock=clock)
    gw = Gateway.build(config, tmp_path, clock)
    yield gw
    run(gw.close())


def _enroll(gw: Gateway, cn: str) -> x509.Certificate:
    csr, _ = make_csr(cn, dns=[cn])
    result = run(gw.enrollment.submit(EnrollmentRequest(
        Protocol.MANUAL, Operation.ENROLL, "default", csr, csr_der(csr),
        Principal(PrincipalKind.ADMIN, "test"))))
    assert result.certificate is not None
    return result.certificate.certificate


def _ocsp_status(gw: Gateway, cert: x509.Certificate, issuer: x509.Certificate) -> Any:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    from cryptography.hazmat.primitives.serialization import Encoding

    response = ocsp.load_der_ocsp_response(gw.revocation.ocsp("internal",
                                                              request.public_bytes(Encoding.DER)))
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return response.certificate_status


def test_issue_revoke_crl_and_ocsp(gateway: Gateway) -> None:
    cert = _enroll(gateway, "svc.example.test")
    chain = run(gateway.backends.get("internal").ca_chain())
    cert.verify_directly_issued_by(chain[0])
    chain[0].verify_directly_issued_by(chain[1])
    assert _ocsp_status(gateway, cert, chain[0]) is ocsp.OCSPCertStatus.GOOD

    first_crl = x509.load_der_x509_crl(run(gateway.revocation.crl("internal")))
    assert first_crl.get_revoked_certificate_by_serial_number(cert.serial_number) is None

    state = run(gateway.revocation.revoke(format(cert.serial_number, "x"),
                                          RevocationReason.KEY_COMPROMISE, by="test"))
    assert state == "done"
    crl = x509.load_der_x509_crl(run(gateway.revocation.crl("internal")))
    assert crl.is_signature_valid(chain[0].public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    first = first_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > first
    assert _ocsp_status(gateway, cert, chain[0]) is ocsp.OCSPCertStatus.REVOKED
    # Revoking twice is a conflict, not a second entry.
    from gateway.errors import ErrorKind, GatewayError

    with pytest.raises(GatewayError) as caught:
        run(gateway.revocation.revoke(format(cert.serial_number, "x"),
                                      RevocationReason.KEY_COMPROMISE, by="test"))
    assert caught.value.kind is ErrorKind.CONFLICT


def test_unknown_serial_in_ocsp_is_unknown(gateway: Gateway) -> None:
    from tests.support.fakes import FakeBackend

    stranger = FakeBackend()
    chain = run(gateway.backends.get("internal").ca_chain())
    csr, _ = make_csr("x.test")
    other = _enroll(gateway, "known.example.test")
    # A certificate we never issued, but presented as if from our issuer: unknown.
    forged = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(chain[0].subject)
              .public_key(csr.public_key()).serial_number(12345)
              .not_valid_before(other.not_valid_before_utc)
              .not_valid_after(other.not_valid_after_utc)
              .sign(stranger._key, hashes.SHA256()))
    assert _ocsp_status(gateway, forged, chain[0]) is ocsp.OCSPCertStatus.UNKNOWN


def test_crl_is_cached_until_a_revocation(gateway: Gateway) -> None:
    a = run(gateway.revocation.crl("internal"))
    b = run(gateway.revocation.crl("internal"))
    assert a == b
