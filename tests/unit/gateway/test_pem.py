"""Defensive CSR loading: every bad input is a clear, typed error."""

from __future__ import annotations

import base64

import pytest

from gateway.errors import ErrorKind, GatewayError
from gateway.pem import load_csr
from tests.support.pki import csr_der, csr_pem, make_csr


def test_pem_der_and_base64_forms_load() -> None:
    csr, _ = make_csr("a.test")
    der = csr_der(csr)
    for data in (csr_pem(csr), der, base64.b64encode(der), base64.encodebytes(der)):
        loaded, out_der = load_csr(data)
        assert out_der == der and loaded.subject == csr.subject


@pytest.mark.parametrize(("data", "kind", "text"), [
    (b"", ErrorKind.MALFORMED, "empty"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", ErrorKind.MALFORMED,
     "not a CERTIFICATE REQUEST"),
    (b"@@@ not base64 @@@", ErrorKind.MALFORMED, "not valid base64"),
    (b"\x30\x03\x02\x01\x01", ErrorKind.MALFORMED, "not a valid DER PKCS#10"),
    (b"A" * 70000, ErrorKind.PAYLOAD_TOO_LARGE, "larger than"),
])
def test_bad_csr_inputs(data: bytes, kind: ErrorKind, text: str) -> None:
    with pytest.raises(GatewayError) as caught:
        load_csr(data)
    assert caught.value.kind is kind
    assert text in caught.value.detail


def test_truncated_der() -> None:
    csr, _ = make_csr("a.test")
    with pytest.raises(GatewayError) as caught:
        load_csr(csr_der(csr)[:-20])
    assert caught.value.kind is ErrorKind.MALFORMED


def test_unknown_csr_version_is_malformed() -> None:
    csr, _ = make_csr("v.test")
    der = bytearray(csr_der(csr))
    # CertificationRequestInfo.version is the first INTEGER inside the first inner SEQUENCE.
    index = der.index(b"\x02\x01\x00")
    der[index + 2] = 0x05
    with pytest.raises(GatewayError) as caught:
        load_csr(bytes(der))
    assert caught.value.kind is ErrorKind.MALFORMED


def test_der_ending_in_whitespace_bytes_is_not_stripped() -> None:
    for _ in range(3000):
        csr, _ = make_csr("ws.test")
        der = csr_der(csr)
        if der[-1] in b" \t\n\r\x0b\x0c":
            loaded, out = load_csr(der)
            assert out == der and loaded == csr
            return
    raise AssertionError("no CSR ending in a white-space byte")  # ~1 in 40 per CSR: unreachable
