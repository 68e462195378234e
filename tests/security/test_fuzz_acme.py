"""Rule 11 (JSON and JWS): hostile ACME requests in-process against the whole app.

Deeply nested JSON, damaged bytes of a valid signed request, properly signed JWS whose
protected header or payload holds arbitrary JSON, and odd CSRs at finalize: each answer
is an RFC 8555 problem document with a 4xx status (RFC 8555 §6.7), never a 5xx or a
logged traceback.  The positive control registers an account and orders a certificate.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from tests.security.fuzzing import FUZZ, Harness, harness, mutate, seed
from tests.security.odd_csrs import odd_csrs, plain_csr
from tests.unit.protocols.acme.signer import Client, Key, b64, jws

DIRECTORY = "https://testserver/acme/directory"
PROBLEM = "application/problem+json"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats()
    | st.text(max_size=30) | st.sampled_from(["", "dns", "ip", "x" * 300, "https://testserver/"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)
_ACCOUNT_KEY = Key("ES256")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return harness(tmp_path_factory)


@pytest.fixture(scope="module")
def acme(app: Harness) -> Client:
    client = Client(app.client, DIRECTORY, _ACCOUNT_KEY)
    assert app.check(client.register()).status_code in (200, 201)
    return client


@pytest.fixture(scope="module")
def spare(app: Harness) -> Client:
    """A second account, for key changes."""
    client = Client(app.client, DIRECTORY, Key("ES256"))
    assert app.check(client.register()).status_code in (200, 201)
    return client


def _problem(app: Harness, response: httpx.Response, what: object) -> None:
    app.check(response, what)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.text
    assert response.json()["type"].startswith("urn:ietf:params:acme:error:")


def _post(app: Harness, url: str, body: bytes) -> httpx.Response:
    return app.client.post(url, content=body, headers={"Content-Type": "application/jose+json"})


def _ready_order(app: Harness, acme: Client, name: str) -> str:
    """A newOrder for ``name`` whose authorization is marked valid (no validation server
    runs in-process): the order is ready to finalize."""
    response = app.check(acme.post(acme.directory["newOrder"],
                                   {"identifiers": [{"type": "dns", "value": name}]}))
    assert response.status_code == 201, response.text
    order_id = response.headers["Location"].rsplit("/", 1)[1]
    with app.gateway.db.begin() as connection:
        connection.execute(text("UPDATE acme_authorizations SET status = 'valid' "
                                "WHERE order_id = :id"), {"id": order_id})
    return str(response.json()["finalize"])


def test_positive_control_account_order_and_finalize(app: Harness, acme: Client) -> None:
    finalize = _ready_order(app, acme, "acme-control.example.test")
    csr = plain_csr("acme-control.example.test")
    response = app.check(acme.post(finalize, {"csr": b64(csr)}))
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("valid", "processing")


def test_deeply_nested_json_is_malformed_not_a_recursion_error(app: Harness) -> None:
    for path in ("new-account", "new-order", "revoke-cert"):
        for body in (b'{"protected":' + b"[" * 5000 + b"]" * 5000 + b"}", b"[" * 100_000,
                     b'{"a":' * 20_000):
            _problem(app, _post(app, f"https://testserver/acme/default/{path}", body), body[:20])
    response = _post(app, "https://testserver/acme/default/new-account",
                     b'{"protected":' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert response.status_code == 400
    assert response.json()["type"] == "urn:ietf:params:acme:error:malformed"


def test_deeply_nested_signed_payload_is_malformed(app: Harness, acme: Client) -> None:
    """The payload verifies, then nests 5,000 levels: malformed, not a 500."""
    nested = "[" * 5000 + "]" * 5000
    protected = b64(json.dumps({"alg": "ES256", "kid": acme.kid, "nonce": acme.nonce(),
                                "url": acme.directory["newOrder"]}).encode())
    payload = b64(('{"identifiers":' + nested + "}").encode())
    signature = b64(_ACCOUNT_KEY.sign(f"{protected}.{payload}".encode()))
    body = json.dumps({"protected": protected, "payload": payload, "signature": signature})
    response = _post(app, acme.directory["newOrder"], body.encode())
    _problem(app, response, "nested payload")
    assert response.json()["type"] == "urn:ietf:params:acme:error:malformed"


@FUZZ
@given(data=st.data())
def test_damaged_bytes_of_a_signed_request(app: Harness, acme: Client, data: st.DataObject) -> None:
    valid = seed("acme-new-order", lambda: json.dumps(jws(
        _ACCOUNT_KEY, acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "fuzz.example.test"}]},
        nonce=acme.nonce(), kid=acme.kid)).encode())
    body = mutate(data, valid)
    response = _post(app, acme.directory["newOrder"], body)
    if response.status_code != 201:  # a harmless change, the first time its nonce is fresh
        _problem(app, response, body)


@FUZZ
@given(data=st.data(), member=st.sampled_from(["alg", "nonce", "url", "jwk", "kid", "b64", "crit",
                                               "extra"]))
def test_arbitrary_json_in_the_protected_header(app: Harness, acme: Client, data: st.DataObject,
                                                member: str) -> None:
    value = data.draw(JSON_VALUES, label="value")
    header: dict[str, Any] = {"alg": "ES256", "nonce": acme.nonce(), "url": acme.directory["newAccount"],
                              "jwk": _ACCOUNT_KEY.jwk}
    if member == "jwk" and isinstance(value, dict) and data.draw(st.booleans()):
        value = {**_ACCOUNT_KEY.jwk, **value}
    header[member] = value
    protected = b64(json.dumps(header).encode())
    payload = b64(json.dumps({"termsOfServiceAgreed": True}).encode())
    signature = b64(_ACCOUNT_KEY.sign(f"{protected}.{payload}".encode()))
    body = json.dumps({"protected": protected, "payload": payload, "signature": signature})
    response = _post(app, acme.directory["newAccount"], body.encode())
    app.check(response, header)
    assert response.status_code < 500


_RESOURCES = ("newAccount", "newOrder", "account", "keyChange", "revokeCert", "order",
              "finalize", "authz", "chall", "cert")


@FUZZ
@given(data=st.data(), resource=st.sampled_from(_RESOURCES))
def test_arbitrary_signed_payloads_at_every_resource(app: Harness, acme: Client,
                                                     data: st.DataObject, resource: str) -> None:
    """Valid signatures over arbitrary JSON payloads (and JSON-shaped ones: a payload
    that is an object with the resource's own member names and wrong values)."""
    order = seed("acme-order", lambda: app.check(acme.post(
        acme.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "o.example.test"}]}
    )).content)
    order_json = json.loads(order)
    authz_url = order_json["authorizations"][0]
    urls = {**acme.directory, "account": acme.kid, "finalize": order_json["finalize"],
            "authz": authz_url, "order": order_json["finalize"].rsplit("/", 1)[0],
            "cert": acme.directory["newOrder"].replace("new-order", "cert/" +
                                                       order_json["finalize"].split("/")[-2]),
            "chall": authz_url.replace("/authz/", "/chall/")}
    members = {"newAccount": ["contact", "termsOfServiceAgreed", "onlyReturnExisting",
                              "externalAccountBinding"],
               "newOrder": ["identifiers", "notBefore", "notAfter", "replaces", "profile"],
               "account": ["contact", "status"], "keyChange": ["account", "oldKey"],
               "revokeCert": ["certificate", "reason"], "finalize": ["csr"]}.get(resource, ["x"])
    if data.draw(st.booleans(), label="shaped"):
        payload: Any = {m: data.draw(JSON_VALUES) for m in
                        data.draw(st.lists(st.sampled_from(members), min_size=1, unique=True))}
    else:
        payload = data.draw(JSON_VALUES | st.none(), label="payload")
    body = jws(_ACCOUNT_KEY, urls[resource], payload, nonce=acme.nonce(),
               kid=None if resource == "newAccount" else acme.kid)
    response = _post(app, urls[resource], json.dumps(body).encode())
    app.check(response, (resource, payload))
    assert response.status_code < 500


_READY: dict[str, str] = {}


def _finalize(app: Harness, acme: Client, csr: bytes) -> httpx.Response:
    """Finalize a ready order for fuzz.example.test with ``csr``; an order is reused
    while it stays ready (a refused CSR leaves it so), which keeps the number of orders
    under the per-name rate limit however many examples run."""
    if "url" not in _READY:
        _READY["url"] = _ready_order(app, acme, "fuzz.example.test")
    response = app.check(acme.post(_READY["url"], {"csr": b64(csr)}), csr)
    if response.status_code != 400:
        _READY.clear()  # issued, invalid or no longer ready: the next example orders again
    return response


@FUZZ
@given(csr=odd_csrs())
def test_odd_csrs_at_finalize(app: Harness, acme: Client, csr: bytes) -> None:
    response = _finalize(app, acme, csr)
    assert response.status_code in (200, 400, 403), response.text


@FUZZ
@given(data=st.data())
def test_damaged_csrs_at_finalize(app: Harness, acme: Client, data: st.DataObject) -> None:
    response = _finalize(app, acme, mutate(data, plain_csr("fuzz.example.test")))
    assert response.status_code in (200, 400, 403), response.text


@FUZZ
@given(profile=st.sampled_from(["default", "open", "nope", "x" * 300, ".."]) | st.text(max_size=10),
       cert_id=st.sampled_from(["", ".", "a.b", "AA.AA", "AAAA.", ".AAAA", "!!.??", "A" * 5000 + ".AA",
                                "aGVsbG8.d29ybGQ", "aGVsbG8.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
       | st.text(max_size=40) | st.binary(max_size=40).map(lambda b: b64(b) + "." + b64(b[::-1])),
       resource=st.sampled_from(["directory", "new-nonce", "renewal-info/{id}", "order/{id}",
                                 "authz/{id}", "chall/{id}", "cert/{id}", "acct/{id}",
                                 "acct/{id}/orders", "order/{id}/finalize"]))
def test_odd_profiles_and_resource_ids(app: Harness, acme: Client, profile: str, cert_id: str,
                                       resource: str) -> None:
    from urllib.parse import quote

    path = f"/acme/{quote(profile, safe='')}/{resource.format(id=quote(cert_id, safe=''))}"
    if resource in ("directory", "new-nonce") or resource.startswith("renewal-info"):
        response = app.client.get(path)
    else:  # POST-as-GET, signed with the account key, at an odd URL
        body = jws(_ACCOUNT_KEY, "https://testserver" + path, None, nonce=acme.nonce(), kid=acme.kid)
        response = _post(app, path, json.dumps(body).encode())
    app.check(response, path)
    assert response.status_code < 500


@FUZZ
@given(data=st.data(), where=st.sampled_from(["key-change", "eab"]),
       member=st.sampled_from(["alg", "url", "jwk", "kid", "nonce", "payload", "signature"]))
def test_nested_jws_with_odd_members(app: Harness, spare: Client, data: st.DataObject,
                                     where: str, member: str) -> None:
    """The JWS inside a JWS: keyChange's inner JWS (RFC 8555 §7.3.5) and the external
    account binding (§7.3.4), with one member replaced by arbitrary JSON.  Key changes
    use an account of their own: one that succeeds (a harmless member) rolls its key."""
    acme = spare
    value = data.draw(JSON_VALUES, label="value")
    new_key = Key("ES256")
    if where == "key-change":
        url, signer_key, kid = acme.directory["keyChange"], new_key, None
        payload: Any = {"account": acme.kid, "oldKey": acme.key.jwk}
        header: dict[str, Any] = {"alg": "ES256", "url": url, "jwk": new_key.jwk}
    else:
        url, signer_key, kid = acme.directory["newAccount"], new_key, None
        payload = new_key.jwk
        header = {"alg": "HS256", "url": url, "kid": "kid-" + "0" * 10}
    if member in ("payload", "signature"):
        inner_protected = b64(json.dumps(header).encode())
        inner_payload = b64(json.dumps(value if member == "payload" else payload).encode())
        inner = {"protected": inner_protected, "payload": inner_payload,
                 "signature": value if member == "signature" else b64(b"\x00" * 64)}
    else:
        header[member] = value
        inner_protected = b64(json.dumps(header).encode())
        inner_payload = b64(json.dumps(payload).encode())
        signature = b64(signer_key.sign(f"{inner_protected}.{inner_payload}".encode()))
        inner = {"protected": inner_protected, "payload": inner_payload, "signature": signature}
    if where == "key-change":
        body = jws(acme.key, url, inner, nonce=acme.nonce(), kid=acme.kid)
    else:
        body = jws(new_key, url, {"termsOfServiceAgreed": True, "externalAccountBinding": inner},
                   nonce=acme.nonce(), kid=kid)
    response = _post(app, url, json.dumps(body).encode())
    app.check(response, (where, member, value))
    assert response.status_code < 500
    if where == "key-change" and response.status_code == 200:
        acme.key = new_key
