"""Rule 11 (admin API JSON): arbitrary and damaged JSON bodies, odd query strings and
path segments at every admin endpoint, with an admin token, in-process against the
whole app: the admin API's JSON error (4xx) or success, never a 5xx or a traceback.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.security.fuzzing import FUZZ, Harness, harness, mutate
from tests.security.test_fuzz_acme import JSON_VALUES

_BODIES = {
    "/admin/api/certificates": ["profile", "csr", "transaction_id"],
    "/admin/api/challenges": ["profile", "ttl_seconds", "uses", "subject_pattern"],
    "/admin/api/eab-keys": ["profile", "ttl_seconds"],
    "/admin/api/users": ["profile", "name", "password"],
    "/admin/api/certificates/{serial}/revoke": ["reason"],
    "/admin/api/requests/{request_id}/approve": ["x"],
    "/admin/api/requests/{request_id}/deny": ["reason"],
    "/admin/api/users/default/{name}/disable": ["x"],
    "/admin/api/eab-keys/{kid}/disable": ["x"],
}
_LISTS = {
    "/admin/api/certificates": ["serial", "subject", "san", "profile", "backend", "status",
                                "expiring_before", "limit", "offset"],
    "/admin/api/requests": ["state", "profile", "protocol", "limit", "offset"],
    "/admin/api/audit": ["action", "actor", "request_id", "serial", "since", "until", "limit",
                         "offset"],
    "/admin/api/challenges": ["profile"], "/admin/api/eab-keys": ["profile"],
    "/admin/api/users": ["profile"], "/admin/api/profiles": ["x"], "/admin/api/backends": ["x"],
}
_SEGMENTS = st.sampled_from(["0", "00ff", "0x" + "f" * 98, "-1", "..", "%00", "a" * 300,
                             "00000000-0000-0000-0000-000000000000", "é", "%2F", "null"]) \
    | st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1,
              max_size=20)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return harness(tmp_path_factory)


def _auth(app: Harness) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.admin_token}", "Content-Type": "application/json"}


def test_positive_control_admin_calls_succeed(app: Harness) -> None:
    response = app.check(app.client.post("/admin/api/challenges", json={"profile": "default"},
                                         headers=_auth(app)))
    assert response.status_code == 201, response.text
    assert app.check(app.client.get("/admin/api/certificates", headers=_auth(app))).status_code == 200


def test_deeply_nested_admin_json_is_a_client_error(app: Harness) -> None:
    for body in (b"[" * 5000 + b"]" * 5000, b'{"csr":' * 20_000):
        response = app.check(app.client.post("/admin/api/certificates", content=body,
                                             headers=_auth(app)))
        assert response.status_code in (400, 422)


def _path(data: st.DataObject, template: str) -> str:
    for name in ("{serial}", "{request_id}", "{name}", "{kid}"):
        if name in template:
            template = template.replace(name, quote(data.draw(_SEGMENTS, label=name), safe=""))
    return template


@FUZZ
@given(data=st.data(), template=st.sampled_from(sorted(_BODIES)))
def test_arbitrary_json_bodies(app: Harness, data: st.DataObject, template: str) -> None:
    body: Any
    if data.draw(st.booleans(), label="shaped"):
        body = {m: data.draw(JSON_VALUES) for m in
                data.draw(st.lists(st.sampled_from(_BODIES[template]), min_size=1, unique=True))}
    else:
        body = data.draw(JSON_VALUES, label="body")
    raw = json.dumps(body).encode()
    if data.draw(st.integers(0, 3), label="damage") == 0:
        raw = mutate(data, raw)
    path = _path(data, template)
    response = app.client.post(path, content=raw, headers=_auth(app))
    app.check(response, (path, raw))
    assert response.status_code < 500
    if response.status_code >= 400:
        assert "error" in response.json()


@FUZZ
@given(data=st.data(), path=st.sampled_from(sorted(_LISTS)))
def test_odd_query_strings_and_path_segments(app: Harness, data: st.DataObject, path: str) -> None:
    params = {name: data.draw(_SEGMENTS | st.sampled_from(["", "1e9", "2026-13-45T99:00",
                                                          "9999-12-31T23:59:59+14:00"]))
              for name in data.draw(st.lists(st.sampled_from(_LISTS[path]), unique=True))}
    if data.draw(st.booleans(), label="one item"):
        path = f"{path}/{quote(data.draw(_SEGMENTS, label='segment'), safe='')}"
    response = app.client.get(path, params=params, headers=_auth(app))
    app.check(response, (path, params))
    assert response.status_code < 500
