"""Rule 11 (PKCS#10 and the policy): properly signed CSRs with unusual contents — odd
name types and string types, NUL bytes, huge RDNs, otherName / registeredID /
directoryName / IP-network SANs, duplicated and unknown extensions, DSA, RSA-1024,
ed448 and other keys, broken signatures — through every door that takes a CSR (EST
simpleenroll, the admin API, SCEP PKCSReq), in-process against the whole app: a
certificate or the protocol's client error, never a 5xx or a logged traceback.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given

from tests.security.fuzzing import EST_PASSWORD, EST_USER, FUZZ, OPEN_PROFILE, Harness, harness
from tests.security.odd_csrs import (
    CN,
    ORG,
    SAN,
    extension,
    info,
    key,
    name,
    odd_csrs,
    plain_csr,
    seq,
    signed_csr,
    spki,
    tlv,
    utf8,
)
from tests.unit.protocols.scep.client import Client, ra_from_ca_ra_cert, self_signed


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return harness(tmp_path_factory)


EST_ENROLL = "/.well-known/est/simpleenroll"
_SCEP_KEY = rsa.generate_private_key(65537, 2048)


def _est(app: Harness, csr: bytes) -> int:
    response = app.client.post(EST_ENROLL, content=base64.encodebytes(csr),
                               auth=(EST_USER, EST_PASSWORD),
                               headers={"Content-Type": "application/pkcs10"})
    return app.check(response, csr).status_code


def _admin(app: Harness, csr: bytes) -> int:
    pem = "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(csr).decode() \
        + "-----END CERTIFICATE REQUEST-----\n"
    response = app.client.post("/admin/api/certificates", json={"csr": pem, "profile": "default"},
                               headers={"Authorization": f"Bearer {app.admin_token}"})
    return app.check(response, csr).status_code


def _scep_client(app: Harness) -> Client:
    response = app.check(app.client.get(f"/scep/{OPEN_PROFILE}", params={"operation": "GetCACert"}))
    ra_der, _ = ra_from_ca_ra_cert(response.content)
    return Client(ra_der=ra_der, key=_SCEP_KEY, signer=self_signed(_SCEP_KEY))


def _scep(app: Harness, csr: bytes) -> int:
    message = _scep_client(app).pkcs_req(csr)
    response = app.client.post(f"/scep/{OPEN_PROFILE}?operation=PKIOperation", content=message,
                               headers={"Content-Type": "application/x-pki-message"})
    return app.check(response, csr).status_code


def test_positive_controls_a_plain_csr_is_issued_at_every_door(app: Harness) -> None:
    assert _est(app, plain_csr("est-control.example.test")) == 200
    assert _admin(app, plain_csr("admin-control.example.test")) == 201
    client = _scep_client(app)
    response = app.client.post(f"/scep/{OPEN_PROFILE}?operation=PKIOperation",
                               content=client.pkcs_req(plain_csr("scep-control.example.test")),
                               headers={"Content-Type": "application/x-pki-message"})
    reply = client.read(app.check(response).content)
    assert reply.status == "0" and reply.certificates


@FUZZ
@given(csr=odd_csrs())
def test_odd_csrs_over_est_get_a_certificate_or_a_client_error(app: Harness, csr: bytes) -> None:
    assert _est(app, csr) in (200, 202, 400, 403, 429)


@FUZZ
@given(csr=odd_csrs())
def test_odd_csrs_over_the_admin_api_get_a_certificate_or_a_client_error(app: Harness,
                                                                        csr: bytes) -> None:
    assert _admin(app, csr) in (201, 202, 400, 403, 422, 429)


@FUZZ
@given(csr=odd_csrs())
def test_odd_csrs_over_scep_get_a_certrep(app: Harness, csr: bytes) -> None:
    assert _scep(app, csr) in (200, 400)


def test_a_cn_with_a_nul_byte_is_refused_not_truncated(app: Harness) -> None:
    """The null-prefix attack: ``evil.example.test\\0.good.example`` is refused at every
    door (a plain CN on the same profile is issued: the positive control above)."""
    private = key("p256")
    csr = signed_csr(info(name((CN, utf8("evil.example.test\x00.good.example"))),
                          spki(private), []), private)
    assert _est(app, csr) == 400
    assert _admin(app, csr) == 400
    client = _scep_client(app)
    response = app.client.post(f"/scep/{OPEN_PROFILE}?operation=PKIOperation",
                               content=client.pkcs_req(csr),
                               headers={"Content-Type": "application/x-pki-message"})
    assert client.read(app.check(response).content).status == "2"  # FAILURE


def _san(*names: bytes) -> list[bytes]:
    return [extension(SAN, seq(*names))]


@pytest.mark.parametrize(("label", "subject", "extensions"), [
    ("CN over 64 characters", ((CN, "a" * 65),), []),
    ("O of 5,000 characters", ((ORG, "o" * 5000), (CN, "t.example.test")), []),
    ("an empty subjectAltName", ((CN, "t.example.test"),), _san()),
    ("a dNSName with a space", ((CN, "t.example.test"),), _san(tlv(0x82, b"a b.example.test"))),
    ("a dNSName '*'", ((CN, "t.example.test"),), _san(tlv(0x82, b"*"))),
    ("an empty dNSName", ((CN, "t.example.test"),), _san(tlv(0x82, b""))),
    ("a UTF-8 dNSName", ((CN, "t.example.test"),), _san(tlv(0x82, "é.example".encode()))),
    ("a NUL in a URI", ((CN, "t.example.test"),), _san(tlv(0x86, b"https://a\x00b.example"))),
    ("an rfc822Name '@@'", ((CN, "t.example.test"),), _san(tlv(0x81, b"@@"))),
    ("an IP network SAN", ((CN, "t.example.test"),), _san(tlv(0x87, bytes([10, 0, 0, 0, 255, 0, 0, 0])))),
])
def test_names_that_break_rfc_5280_are_refused_with_a_reason(
        app: Harness, label: str, subject: tuple[tuple[str, str], ...],
        extensions: list[bytes]) -> None:
    """Each was issued (or reached the CA's encoder) before: now a 400 with the reason;
    plain names on the same profile are issued (the positive control above)."""
    private = key("p256")
    csr = signed_csr(info(name(*((kind, utf8(value)) for kind, value in subject)), spki(private),
                          extensions), private)
    response = app.check(app.client.post(EST_ENROLL, content=base64.encodebytes(csr),
                                         auth=(EST_USER, EST_PASSWORD),
                                         headers={"Content-Type": "application/pkcs10"}))
    assert response.status_code == 400, (label, response.text)
