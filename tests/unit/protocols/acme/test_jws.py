"""JWS parsing and verification (RFC 7515, RFC 8555 §6.2), with property tests."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.acme import jws
from protocols.acme.problems import AcmeProblem, ProblemType
from tests.unit.protocols.acme.signer import Key, b64
from tests.unit.protocols.acme.signer import jws as sign

URL = "https://ca.test/acme/default/new-order"


@pytest.mark.parametrize("alg", ["ES256", "ES384", "RS256", "EdDSA"])
def test_each_algorithm_verifies(alg: str) -> None:
    key = Key(alg)
    parsed = jws.parse(json.dumps(sign(key, URL, {"a": 1}, nonce="bm9uY2U")).encode())
    assert parsed.alg == alg and parsed.url == URL and parsed.jwk == key.jwk
    jws.verify(parsed, jws.load_jwk(key.jwk))
    assert parsed.payload_json() == {"a": 1}


def test_tampered_payload_fails() -> None:
    key = Key()
    body = sign(key, URL, {"a": 1}, nonce="bm9uY2U")
    body["payload"] = b64(b'{"a":2}')
    parsed = jws.parse(json.dumps(body).encode())
    with pytest.raises(AcmeProblem) as info:
        jws.verify(parsed, jws.load_jwk(key.jwk))
    assert info.value.type is ProblemType.MALFORMED


def test_signature_by_another_key_fails() -> None:
    parsed = jws.parse(json.dumps(sign(Key(), URL, {}, nonce="bm9uY2U")).encode())
    with pytest.raises(AcmeProblem):
        jws.verify(parsed, jws.load_jwk(Key().jwk))


@pytest.mark.parametrize("alg", ["none", "HS256", "RS384", "ES512", "PS256"])
def test_unsupported_alg_is_bad_signature_algorithm(alg: str) -> None:
    body = sign(Key(), URL, {}, nonce="bm9uY2U", alg=alg)
    with pytest.raises(AcmeProblem) as info:
        jws.parse(json.dumps(body).encode())
    assert info.value.type is ProblemType.BAD_SIGNATURE_ALGORITHM
    assert "ES256" in info.value.to_json()["algorithms"]


def test_alg_not_matching_key() -> None:
    key = Key("ES256")
    parsed = jws.parse(json.dumps(sign(key, URL, {}, nonce="bm9uY2U", alg="ES384")).encode())
    with pytest.raises(AcmeProblem) as info:
        jws.verify(parsed, jws.load_jwk(key.jwk))
    assert info.value.type is ProblemType.BAD_SIGNATURE_ALGORITHM


def test_small_rsa_key_is_bad_public_key() -> None:
    key = Key("RS256", rsa_bits=1024)
    with pytest.raises(AcmeProblem) as info:
        jws.load_jwk(key.jwk)
    assert info.value.type is ProblemType.BAD_PUBLIC_KEY


def test_private_jwk_and_unknown_curve_refused() -> None:
    with pytest.raises(AcmeProblem) as info:
        jws.load_jwk({**Key().jwk, "d": "AAAA"})
    assert info.value.type is ProblemType.BAD_PUBLIC_KEY
    with pytest.raises(AcmeProblem):
        jws.load_jwk({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"})
    with pytest.raises(AcmeProblem):  # a point not on the curve
        jws.load_jwk({"kty": "EC", "crv": "P-256", "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32)})


def test_jwk_and_kid_are_exclusive() -> None:
    key = Key()
    both = sign(key, URL, {}, nonce="bm9uY2U", extra={"kid": "https://ca.test/acct/1"})
    with pytest.raises(AcmeProblem) as info:
        jws.parse(json.dumps(both).encode())
    assert info.value.type is ProblemType.MALFORMED


def test_missing_nonce_is_bad_nonce_and_missing_url_unauthorized() -> None:
    with pytest.raises(AcmeProblem) as info:
        jws.parse(json.dumps(sign(Key(), URL, {}, nonce=None)).encode())
    assert info.value.type is ProblemType.BAD_NONCE
    body = sign(Key(), "", {}, nonce="bm9uY2U")
    with pytest.raises(AcmeProblem) as info:
        jws.parse(json.dumps(body).encode())
    assert info.value.type is ProblemType.UNAUTHORIZED


@pytest.mark.parametrize("body", [
    b"", b"null", b"[]", b'"x"', b"{", b'{"protected": "e30", "payload": ""}',
    b'{"signatures": [], "payload": ""}',
    b'{"protected": "e30=", "payload": "", "signature": ""}',
    b'{"protected": 5, "payload": "", "signature": ""}',
    b'{"protected": "e30", "payload": "", "signature": "", "header": {}}',
])
def test_malformed_structures(body: bytes) -> None:
    with pytest.raises(AcmeProblem) as info:
        jws.parse(body)
    assert info.value.type is ProblemType.MALFORMED


def test_post_as_get_has_empty_payload() -> None:
    parsed = jws.parse(json.dumps(sign(Key(), URL, None, nonce="bm9uY2U")).encode())
    assert parsed.post_as_get
    with pytest.raises(AcmeProblem):
        parsed.payload_json()


def test_thumbprint_rfc7638_example() -> None:
    # RFC 7638 §3.1 example key and thumbprint.
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
           "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
                "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v"
                "-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08q"
                "NLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8aw"
                "apJzKnqDKgw"}
    assert jws.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parser_never_crashes_on_bytes(data: bytes) -> None:
    try:
        jws.parse(data)
    except AcmeProblem:
        pass


@settings(max_examples=300, deadline=None)
@given(header=st.dictionaries(st.sampled_from(["alg", "nonce", "url", "jwk", "kid", "b64", "x"]),
                              _json, max_size=6),
       payload=st.one_of(st.text(max_size=30), _json.map(lambda v: b64(json.dumps(v).encode()))),
       signature=st.text(max_size=40))
def test_parser_never_crashes_on_headers(header: dict[str, object], payload: str,
                                         signature: str) -> None:
    body = {"protected": b64(json.dumps(header).encode()), "payload": payload,
            "signature": signature}
    try:
        parsed = jws.parse(json.dumps(body).encode())
    except AcmeProblem:
        return
    try:
        if parsed.jwk is not None:
            jws.verify(parsed, jws.load_jwk(parsed.jwk))
    except AcmeProblem:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["kty", "crv", "x", "y", "n", "e"]),
                       st.one_of(st.text(max_size=50), st.integers(), st.none()), max_size=6))
def test_load_jwk_never_crashes(jwk: dict[str, object]) -> None:
    try:
        jws.load_jwk(jwk)
    except AcmeProblem:
        pass
