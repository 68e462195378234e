"""CMC structures (RFC 5272) and the CMS signing of Full PKI messages."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from asn1crypto import cms, core
from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import ErrorKind, GatewayError
from protocols import cms as cmslib
from protocols.est import cmc
from protocols.est.fullcmc import _open_signed
from tests.support.est import TestCa
from tests.support.pki import csr_der, make_csr


def test_pki_data_round_trip_with_implicit_tcr_tag() -> None:
    csr, _ = make_csr("cmc.example.test")
    request = cmc.TaggedRequest(name="tcr", value={
        "body_part_id": 1,
        "certification_request": asn1_csr.CertificationRequest.load(csr_der(csr))})
    data = cmc.PKIData({
        "control_sequence": [cmc.tagged_attribute(2, cmc.OID_TRANSACTION_ID, core.Integer(9))],
        "req_sequence": [request], "cms_sequence": [], "other_msg_sequence": []}).dump()
    parsed = cmc.PKIData.load(data)
    item = parsed["req_sequence"][0]
    assert item.name == "tcr" and item.chosen["body_part_id"].native == 1
    assert item.chosen["certification_request"].dump() == csr_der(csr)
    assert item.dump()[0] == 0xA0  # [0] IMPLICIT, constructed (RFC 5272 Appendix A)
    control = parsed["control_sequence"][0]
    assert control["attr_type"].dotted == cmc.OID_TRANSACTION_ID
    assert core.Integer.load(control["attr_values"][0].dump()).native == 9


def test_crmf_request_is_recognised_but_opaque() -> None:
    data = bytes.fromhex("3005a103020107")  # a [1] (crm) body
    assert cmc._Requests.load(data)[0].name == "crm"


def test_status_info_v2_encodings() -> None:
    failed = cmc.CMCStatusInfoV2.load(cmc.status_v2(
        cmc.CMCStatus.FAILED, [3], "no", cmc.CMCFailInfo.BAD_REQUEST).dump())
    assert failed["cmc_status"].native == 2
    assert [b.chosen.native for b in failed["body_list"]] == [3]
    assert failed["status_string"].native == "no"
    assert failed["other_info"].name == "fail_info" and failed["other_info"].chosen.native == 2
    pend = cmc.PendInfo({"pend_token": b"id", "pend_time": dt.datetime(2030, 1, 1,
                                                                         tzinfo=dt.UTC)})
    pending = cmc.CMCStatusInfoV2.load(cmc.status_v2(cmc.CMCStatus.PENDING, [1],
                                                     pend_info=pend).dump())
    assert pending["other_info"].name == "pend_info"
    assert pending["other_info"].chosen["pend_token"].native == b"id"


def test_revoke_request_parses() -> None:
    ca = TestCa.create("Revoke CA")
    issuer = asn1_x509.Certificate.load(ca.cert.public_bytes(Encoding.DER)).subject
    der = cmc.RevokeRequest({"issuer_name": issuer, "serial_number": 0xABC,
                             "reason": 1, "comment": "lost"}).dump()
    parsed = cmc.RevokeRequest.load(der)
    assert parsed["serial_number"].native == 0xABC
    assert parsed["issuer_name"] == issuer
    from protocols.est.fullcmc import _reason_code

    assert _reason_code(parsed["reason"]) == 1


def _signed_by_ski(content: bytes, key: ec.EllipticCurvePrivateKey, *,
                   digest: bytes | None = None) -> bytes:
    from cryptography import x509

    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": [cmc.OID_PKI_DATA]},
        {"type": "message_digest", "values": [digest or hashlib.sha256(content).digest()]},
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    signed = cms.SignedData({
        "version": "v3", "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": cmc.OID_PKI_DATA,
                               "content": core.ParsableOctetString(content)},
        "signer_infos": [{"version": "v3",
                          "sid": cms.SignerIdentifier(name="subject_key_identifier", value=ski),
                          "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": attrs,
                          "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                          "signature": key.sign(attrs.dump(), ec.ECDSA(hashes.SHA256()))}],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def test_open_signed_verifies_signers_named_by_key_id() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    content = b"\x30\x00"
    opened = _open_signed(_signed_by_ski(content, key), [key.public_key()])
    assert opened.content == content and opened.content_type == cmc.OID_PKI_DATA
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(GatewayError) as caught:
        _open_signed(_signed_by_ski(content, key), [other.public_key()])
    assert caught.value.kind is ErrorKind.BAD_SIGNATURE
    with pytest.raises(GatewayError) as caught:
        _open_signed(_signed_by_ski(content, key, digest=b"\x00" * 32), [key.public_key()])
    assert "digest" in caught.value.detail
    with pytest.raises(GatewayError) as caught:
        _open_signed(b"\x30\x03\x02\x01\x00", [])
    assert caught.value.kind is ErrorKind.MALFORMED


def test_sign_produces_a_verifiable_response() -> None:
    ca = TestCa.create("Signer CA")
    cert, key = ca.issue("gateway.example.test")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = cmslib.sign(b"\x30\x00", signer_der=cert.public_bytes(Encoding.DER), signer_key=key,
                      digest="sha256", attributes=(), content_type=cmc.OID_PKI_RESPONSE)
    opened = _open_signed(der, [])  # the signer certificate travels inside
    assert opened.content_type == cmc.OID_PKI_RESPONSE and opened.content == b"\x30\x00"
    assert opened.signers[0].public_key == cert.public_key()
