"""EST wire encodings: base64 bodies, media types, certs-only, multipart (RFC 7030 §4)."""

from __future__ import annotations

import base64
import email.parser
import email.policy

import pytest
from asn1crypto import cms

from gateway.errors import ErrorKind, GatewayError
from protocols.est import wire
from tests.support.pki import csr_der, make_csr

DER = csr_der(make_csr("wire.example.test")[0])


@pytest.mark.parametrize("encode", [
    lambda d: base64.encodebytes(d),  # 76-column lines
    lambda d: base64.b64encode(d),  # one line
    lambda d: base64.encodebytes(d).replace(b"\n", b"\r\n"),
    lambda d: b"  " + base64.b64encode(d) + b"\n\n",
])
def test_decode_body_accepts_every_line_break_style(encode) -> None:  # type: ignore[no-untyped-def]
    assert wire.decode_body(encode(DER), None, what="CSR") == DER
    assert wire.decode_body(encode(DER), "base64", what="CSR") == DER
    assert wire.decode_body(encode(DER), " BASE64 ", what="CSR") == DER


@pytest.mark.parametrize(("body", "cte", "reason"), [
    (b"", None, "empty body"),
    (b"not base64 !!", None, "not valid base64"),
    (base64.b64encode(b"hello"), None, "not a DER"),
    (base64.b64encode(DER), "quoted-printable", "Content-Transfer-Encoding"),
    (base64.b64encode(DER)[:-3], None, "not valid base64"),
])
def test_decode_body_refuses_with_one_line_reason(body: bytes, cte: str | None,
                                                  reason: str) -> None:
    with pytest.raises(GatewayError) as caught:
        wire.decode_body(body, cte, what="CSR")
    assert caught.value.kind is ErrorKind.MALFORMED
    assert reason in caught.value.detail and "\n" not in caught.value.detail


def test_media_type_ignores_parameters_and_case() -> None:
    assert wire.media_type("Application/PKCS10; charset=x") == "application/pkcs10"
    assert wire.media_type(None) == ""
    wire.require_media_type("application/pkcs10", wire.PKCS10)
    with pytest.raises(wire.UnsupportedMediaType) as caught:
        wire.require_media_type("text/plain", wire.PKCS10)
    assert "application/pkcs10" in caught.value.detail
    with pytest.raises(wire.UnsupportedMediaType):
        wire.require_media_type(None, wire.PKCS10)


def test_b64_wraps_at_64_columns_and_round_trips() -> None:
    text = wire.b64(DER * 3)
    lines = text.split(b"\n")
    assert all(len(line) <= 64 for line in lines)
    assert base64.b64decode(b"".join(lines)) == DER * 3


def test_certs_only_holds_the_certificates_and_no_signer() -> None:
    from tests.support.est import TestCa

    ca = TestCa.create("Wire CA")
    leaf, _ = ca.issue("leaf.example.test")
    from cryptography.hazmat.primitives.serialization import Encoding

    ders = [leaf.public_bytes(Encoding.DER), ca.cert.public_bytes(Encoding.DER)]
    info = cms.ContentInfo.load(base64.b64decode(wire.certs_only_b64(ders)))
    signed = info["content"]
    assert info["content_type"].native == "signed_data"
    assert len(signed["signer_infos"]) == 0
    assert sorted(c.chosen.dump() for c in signed["certificates"]) == sorted(ders)


def test_multipart_is_parseable_mime() -> None:
    content_type, body = wire.multipart([(wire.PKCS8, b"\x30\x01\x00"),
                                         (wire.CERTS_ONLY, b"\x30\x02\x01\x01")])
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["application/pkcs8",
                                                     "application/pkcs7-mime"]
    assert parts[1].get_param("smime-type") == "certs-only"
    assert [p.get_content() for p in parts] == [b"\x30\x01\x00", b"\x30\x02\x01\x01"]


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_certs_only_encoding_equals_the_asn1crypto_one(count: int) -> None:
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from protocols.cms import certs_only
    from tests.support.est import TestCa

    ca = TestCa.create("Enc CA")
    ders = [ca.cert.public_bytes(Encoding.DER)]
    ders += [ca.issue(f"n{i}.example.test")[0].public_bytes(Encoding.DER) for i in range(count)]
    ders = ders[:count]
    signed = cms.SignedData({
        "version": "v1", "digest_algorithms": [], "encap_content_info": {"content_type": "data"},
        "certificates": [asn1_x509.Certificate.load(der) for der in ders], "signer_infos": [],
    })
    expected = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    assert certs_only(ders) == expected  # asn1crypto sorts the SET OF as DER requires

