"""Rule 11 (binary entry points): mutated EST, CMC, SCEP and OCSP messages, in-process
against the whole app.  Each test starts from a valid message (its positive control
below is answered with success), damages it — at the byte level, in its DER structure,
and, re-signed, inside the signature so the inner parsers see it too — and requires the
protocol's own answer: an HTTP 4xx, a CMC or SCEP in-band failure, or an OCSP error
status.  Never a 5xx, never a logged traceback.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote

import httpx
import pytest
from asn1crypto import cms, core
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from hypothesis import given
from hypothesis import strategies as st

from protocols import cms as cmslib
from protocols.est import cmc
from protocols.scep.vocabulary import (
    OID_MESSAGE_TYPE,
    OID_SENDER_NONCE,
    OID_TRANSACTION_ID,
    MessageType,
)
from tests.security.fuzzing import EST_PASSWORD, EST_USER, FUZZ, OPEN_PROFILE, Harness, harness, mutate, seed
from tests.security.odd_csrs import key, plain_csr
from tests.unit.protocols.scep.client import Client, ra_from_ca_ra_cert, self_signed

EST = "/.well-known/est/"
CMC_TYPE = "application/pkcs7-mime; smime-type=CMC-request"
_SCEP_KEY = rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return harness(tmp_path_factory)


# -- EST (RFC 7030) ------------------------------------------------------------------------


def _est_post(app: Harness, operation: str, body: bytes, content_type: str = "application/pkcs10"
              ) -> int:
    response = app.client.post(EST + operation, content=body, auth=(EST_USER, EST_PASSWORD),
                               headers={"Content-Type": content_type})
    return app.check(response, (operation, body)).status_code


def test_est_positive_control(app: Harness) -> None:
    assert _est_post(app, "simpleenroll", base64.encodebytes(plain_csr("est.example.test"))) == 200


@FUZZ
@given(data=st.data(), operation=st.sampled_from(["simpleenroll", "serverkeygen",
                                                  "simplereenroll"]))
def test_est_mutated_csrs(app: Harness, data: st.DataObject, operation: str) -> None:
    valid = plain_csr("est-fuzz.example.test")
    if data.draw(st.booleans(), label="damage the base64 text"):
        body = mutate(data, base64.encodebytes(valid))
    else:
        body = base64.encodebytes(mutate(data, valid))
    assert _est_post(app, operation, body) in (200, 202, 400, 401, 403, 413, 415, 429)


def _issued_pem(app: Harness, cn: str) -> bytes:
    response = app.check(app.client.post(EST + "simpleenroll",
                                         content=base64.encodebytes(plain_csr(cn)),
                                         auth=(EST_USER, EST_PASSWORD),
                                         headers={"Content-Type": "application/pkcs10"}))
    assert response.status_code == 200, response.text
    issued = cms.ContentInfo.load(base64.b64decode(response.content))["content"]
    der = issued["certificates"][0].chosen.dump()
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def _reenroll(app: Harness, pem: bytes, cn: str) -> int:
    """simplereenroll with the client certificate forwarded by the (trusted) proxy."""
    response = app.client.post(EST + "simplereenroll", content=base64.encodebytes(plain_csr(cn)),
                               headers={"Content-Type": "application/pkcs10",
                                        "X-SSL-Client-Cert": quote(pem.decode("latin-1"))})
    return app.check(response, pem).status_code


def test_est_forwarded_client_certificate_positive_control(app: Harness) -> None:
    pem = _issued_pem(app, "reenroll.example.test")
    assert _reenroll(app, pem, "reenroll.example.test") == 200


@FUZZ
@given(data=st.data(), layer=st.sampled_from(["der", "pem"]))
def test_est_forwarded_client_certificate_mutated(app: Harness, data: st.DataObject,
                                                  layer: str) -> None:
    """The client-certificate header a TLS-terminating proxy forwards, damaged."""
    pem = seed("client-cert", lambda: _issued_pem(app, "reenroll-fuzz.example.test"))
    if layer == "pem":
        damaged = mutate(data, pem)
    else:
        der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        body = base64.encodebytes(mutate(data, der))
        damaged = b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"
    assert _reenroll(app, damaged, "reenroll-fuzz.example.test") in (200, 400, 401, 403, 429)


def _pki_data(csr_der: bytes, controls: list[cmc.TaggedAttribute] | None = None) -> bytes:
    request = cmc.TaggedRequest(name="tcr", value={
        "body_part_id": 1, "certification_request": asn1_csr.CertificationRequest.load(csr_der)})
    return bytes(cmc.PKIData({"control_sequence": controls or [], "req_sequence": [request],
                              "cms_sequence": [], "other_msg_sequence": []}).dump())


def _full_cmc(content: bytes, private: ec.EllipticCurvePrivateKey) -> bytes:
    """ContentInfo(SignedData(PKIData)) signed by the request's key (RFC 5272 §3.2.1.2)."""
    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": [cmc.OID_PKI_DATA]},
        {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
    ])
    sid = cms.SignerIdentifier(name="subject_key_identifier", value=x509.SubjectKeyIdentifier
                               .from_public_key(private.public_key()).digest)
    signed = cms.SignedData({
        "version": "v3", "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": cmc.OID_PKI_DATA,
                               "content": core.ParsableOctetString(content)},
        "signer_infos": [{"version": "v3", "sid": sid, "digest_algorithm": {"algorithm": "sha256"},
                          "signed_attrs": attrs,
                          "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                          "signature": private.sign(attrs.dump(), ec.ECDSA(hashes.SHA256()))}],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def _cmc_key() -> ec.EllipticCurvePrivateKey:
    private = key("p256")
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private


def test_fullcmc_positive_control(app: Harness) -> None:
    message = _full_cmc(_pki_data(plain_csr("cmc.example.test")), _cmc_key())
    assert _est_post(app, "fullcmc", base64.encodebytes(message), CMC_TYPE) == 200


@FUZZ
@given(data=st.data(), where=st.sampled_from(["message", "pki-data", "transaction-id"]))
def test_fullcmc_mutated(app: Harness, data: st.DataObject, where: str) -> None:
    """The CMS wrapper damaged; or the PKIData (or a control in it) damaged and re-signed."""
    pki_data = _pki_data(plain_csr("cmc-fuzz.example.test"), [
        cmc.tagged_attribute(2, cmc.OID_TRANSACTION_ID, core.Integer(7))])
    if where == "message":
        body = mutate(data, seed("fullcmc", lambda: _full_cmc(pki_data, _cmc_key())))
    elif where == "pki-data":
        body = _full_cmc(mutate(data, pki_data), _cmc_key())
    else:
        value = data.draw(st.one_of(st.binary(max_size=40).map(core.OctetString),
                                    st.integers(-(2**70), 2**70).map(core.Integer),
                                    st.text(max_size=20).map(core.UTF8String)))
        oid = data.draw(st.sampled_from([cmc.OID_TRANSACTION_ID, "1.3.6.1.5.5.7.7.17",
                                         "1.3.6.1.5.5.7.7.7", "1.3.6.1.5.5.7.7.25", "1.2.3.4"]))
        pki_data = _pki_data(plain_csr("cmc-fuzz.example.test"),
                             [cmc.tagged_attribute(2, oid, value)])
        body = _full_cmc(pki_data, _cmc_key())
    assert _est_post(app, "fullcmc", base64.encodebytes(body), CMC_TYPE) in (200, 202, 400, 401,
                                                                            403, 413, 415, 429)


# -- SCEP (RFC 8894) -----------------------------------------------------------------------


_CLIENTS: dict[int, Client] = {}


def _scep_client(app: Harness) -> Client:
    """One device for the session: replies are encrypted to the seed message's signer."""
    if id(app) not in _CLIENTS:
        response = app.check(app.client.get(f"/scep/{OPEN_PROFILE}",
                                            params={"operation": "GetCACert"}))
        ra_der, _ = ra_from_ca_ra_cert(response.content)
        _CLIENTS[id(app)] = Client(ra_der=ra_der, key=_SCEP_KEY, signer=self_signed(_SCEP_KEY))
    return _CLIENTS[id(app)]


def _scep_post(app: Harness, message: bytes) -> httpx.Response:
    return app.check(app.client.post(f"/scep/{OPEN_PROFILE}?operation=PKIOperation",
                                     content=message,
                                     headers={"Content-Type": "application/x-pki-message"}),
                     message)


def test_scep_positive_control(app: Harness) -> None:
    client = _scep_client(app)
    response = _scep_post(app, client.pkcs_req(plain_csr("scep.example.test")))
    assert client.read(response.content).status == "0"


@FUZZ
@given(data=st.data(), where=st.sampled_from(["message", "message-get", "csr", "envelope",
                                              "attributes"]))
def test_scep_mutated_messages(app: Harness, data: st.DataObject, where: str) -> None:
    """The pkiMessage damaged outside the signature; or, re-signed, the enveloped
    request, the CSR inside it, or the signed SCEP attributes."""
    client = _scep_client(app)
    csr = plain_csr("scep-fuzz.example.test")
    if where in ("message", "message-get"):
        message = mutate(data, seed("scep", lambda: client.pkcs_req(csr)))
        if where == "message-get":
            response = app.client.get(f"/scep/{OPEN_PROFILE}", params={
                "operation": "PKIOperation", "message": base64.b64encode(message).decode()})
            assert app.check(response, message).status_code in (200, 400)
            return
    elif where == "csr":
        message = client.pkcs_req(mutate(data, csr))
    else:
        inner = cmslib.envelope(csr, [client.ra_der], cipher="aes128_cbc")
        message_type = MessageType.PKCS_REQ.value
        transaction_id = client.transaction_id
        nonce = b"\x01" * 16
        if where == "envelope":
            inner = mutate(data, seed("scep-envelope", lambda: inner))
        else:
            message_type = data.draw(st.sampled_from(["19", "20", "21", "22", "17", "3", "0", "",
                                                      "-1", "99999999999999999999", "\uff11\uff19"]))
            transaction_id = data.draw(st.text(max_size=80))
            nonce = data.draw(st.binary(max_size=40))
        attributes = [
            cmslib.attribute(OID_TRANSACTION_ID, core.PrintableString(transaction_id)
                             if transaction_id.isascii() else core.UTF8String(transaction_id)),
            cmslib.attribute(OID_MESSAGE_TYPE, core.PrintableString(message_type)
                             if message_type.isascii() else core.UTF8String(message_type)),
            cmslib.attribute(OID_SENDER_NONCE, core.OctetString(nonce)),
        ]
        message = cmslib.sign(inner, signer_der=client.signer_der, signer_key=client.key,
                              digest="sha256", attributes=attributes)
    response = _scep_post(app, message)
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert client.read(response.content).status in ("0", "2", "3")


@FUZZ
@given(operation=st.sampled_from(["GetCACaps", "GetCACert", "GetNextCACert", "PKIOperation",
                                  "getcacaps", "", "x" * 300]) | st.text(max_size=20),
       message=st.text(max_size=200) | st.binary(max_size=150).map(
           lambda b: base64.b64encode(b).decode()),
       path=st.sampled_from(["/scep", f"/scep/{OPEN_PROFILE}", "/scep/nope",
                             "/cgi-bin/pkiclient.exe", "/scep/default/pkiclient.exe"]))
def test_scep_odd_query_strings(app: Harness, operation: str, message: str, path: str) -> None:
    response = app.client.get(path, params={"operation": operation, "message": message})
    app.check(response, (path, operation, message))
    assert response.status_code in (200, 400, 404, 405)


# -- OCSP (RFC 6960) -----------------------------------------------------------------------


def _ocsp_request(app: Harness) -> bytes:
    """An OCSP request for a certificate just issued over EST, by its issuing CA."""
    response = app.check(app.client.post(EST + "simpleenroll",
                                         content=base64.encodebytes(plain_csr("ocsp.example.test")),
                                         auth=(EST_USER, EST_PASSWORD),
                                         headers={"Content-Type": "application/pkcs10"}))
    issued = cms.ContentInfo.load(base64.b64decode(response.content))["content"]
    leaf = x509.load_der_x509_certificate(issued["certificates"][0].chosen.dump())
    response = app.check(app.client.get(EST + "cacerts"))
    chain = cms.ContentInfo.load(base64.b64decode(response.content))["content"]["certificates"]
    issuer = next(c for c in (x509.load_der_x509_certificate(c.chosen.dump()) for c in chain)
                  if c.subject == leaf.issuer)
    return ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build() \
        .public_bytes(serialization.Encoding.DER)


def _ocsp_status(der: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(der).response_status


def test_ocsp_positive_control(app: Harness) -> None:
    response = app.check(app.client.post("/ocsp/internal", content=_ocsp_request(app),
                                         headers={"Content-Type": "application/ocsp-request"}))
    assert response.status_code == 200
    assert _ocsp_status(response.content) is ocsp.OCSPResponseStatus.SUCCESSFUL


@FUZZ
@given(data=st.data(), method=st.sampled_from(["POST", "GET"]))
def test_ocsp_mutated_requests(app: Harness, data: st.DataObject, method: str) -> None:
    body = mutate(data, seed("ocsp", lambda: _ocsp_request(app)))
    if method == "POST":
        response = app.client.post("/ocsp/internal", content=body,
                                   headers={"Content-Type": "application/ocsp-request"})
    else:
        encoded = base64.b64encode(body).decode().replace("/", "%2F").replace("+", "%2B")
        response = app.client.get(f"/ocsp/internal/{encoded}")
    app.check(response, body)
    assert response.status_code in (200, 400, 404, 414, 415)
    if response.status_code == 200:
        _ocsp_status(response.content)  # a well-formed OCSPResponse, whatever its status


@FUZZ
@given(template=st.sampled_from(["/crl/{a}.crl", "/crl/{a}/{b}.crl", "/ca/{a}/{b}.cer",
                                 "/ocsp/{a}", "/ocsp/{a}/{b}"]),
       a=st.sampled_from(["internal", "nope", "x" * 300, "..", "%00"]) | st.text(max_size=12),
       b=st.sampled_from(["", "0", "MA==", "A" * 9000, "%2F"]) | st.text(max_size=12))
def test_revocation_paths_with_odd_segments(app: Harness, template: str, a: str, b: str) -> None:
    from urllib.parse import quote

    path = template.format(a=quote(a, safe="%"), b=quote(b, safe="%"))
    if template == "/ocsp/{a}":
        response = app.client.post(path, content=b"\x30\x00",
                                   headers={"Content-Type": "application/ocsp-request"})
    else:
        response = app.client.get(path)
    app.check(response, path)
    assert response.status_code < 500
