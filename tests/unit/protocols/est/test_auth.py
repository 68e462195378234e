"""Credential extraction: HTTP Basic parsing and the trusted-proxy certificate header."""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import ErrorKind, GatewayError
from protocols.est.auth import _basic, _pem_header_to_der, cert_principal
from tests.support.est import TestCa


def test_basic_credentials() -> None:
    value = b"Basic " + base64.b64encode("dév:pa:ss".encode())
    assert _basic(value) == ("dév", "pa:ss")
    assert _basic(None) is None
    assert _basic(b"Bearer abc") is None
    for bad in (b"Basic !!!", b"Basic " + base64.b64encode(b"no-colon")):
        with pytest.raises(GatewayError) as caught:
            _basic(bad)
        assert caught.value.kind is ErrorKind.UNAUTHORIZED


def test_proxy_header_is_url_encoded_pem() -> None:
    cert, _ = TestCa.create("Proxy CA").issue("dev.example.test")
    pem = cert.public_bytes(Encoding.PEM).decode()
    assert _pem_header_to_der(urllib.parse.quote(pem).encode()) == cert.public_bytes(Encoding.DER)
    with pytest.raises(GatewayError) as caught:
        _pem_header_to_der(b"garbage")
    assert caught.value.kind is ErrorKind.FORBIDDEN


def test_client_cert_principal() -> None:
    cert, _ = TestCa.create("P CA").issue("dev.example.test")
    principal = cert_principal(cert)
    assert principal.kind == "client-cert"
    # The SHA-256 fingerprint: serials are unique only per issuer (issue #10 rule 2).
    assert principal.id == cert.fingerprint(hashes.SHA256()).hex()
    assert principal.attributes["serial"] == format(cert.serial_number, "x")
    assert principal.attributes["subject"] == "CN=dev.example.test"
