"""The admin API against the real server process over TLS: tokens and roles, the
inventory, approvals, credentials, audit, JSON errors, and Schemathesis over the spec."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from gateway.auth.challenges import consume_challenge
from gateway.auth.users import UserDirectory
from gateway.store.db import Database
from tests.e2e.test_admin_support import admin_client, create_token, init_data_dir, tls_context
from tests.support.pki import csr_der, csr_pem, make_csr
from tests.support.server import GatehouseServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    data_dir = tmp_path_factory.mktemp("admin") / "gatehouse-data"
    init_data_dir(data_dir)
    gh = GatehouseServer(data_dir).start()
    yield gh
    gh.stop()


@pytest.fixture(scope="module")
def tokens(server: GatehouseServer) -> dict[str, str]:
    return {role: create_token(server.data_dir, role, f"{role}-e2e")
            for role in ("admin", "operator", "auditor")}


def client(server: GatehouseServer, token: str | None) -> httpx.Client:
    return admin_client(server.https_url, server.root_pem, token)


def enroll(api: httpx.Client, cn: str, profile: str = "default") -> httpx.Response:
    csr, _key = make_csr(cn, dns=[f"{cn}.example.test"])
    return api.post("/certificates", json={"profile": profile, "csr": csr_pem(csr).decode()})


def test_no_token_wrong_token_and_roles(server: GatehouseServer, tokens: dict[str, str]) -> None:
    with client(server, None) as anonymous:
        answer = anonymous.get("/certificates")
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    plain = httpx.get(f"{server.http_url}/admin/api/certificates",
                      headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert plain.status_code == 403 and "HTTPS" in plain.json()["detail"]
    bogus = tokens["admin"][:-4] + "AAAA"
    with client(server, bogus) as wrong:
        assert wrong.get("/certificates").status_code == 401
    with client(server, tokens["auditor"]) as auditor:
        assert auditor.get("/certificates").status_code == 200
        assert auditor.get("/audit").status_code == 200
        refused = auditor.post("/challenges", json={"profile": "default"})
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        assert enroll(auditor, "auditor-may-not").status_code == 403
    with client(server, tokens["operator"]) as operator:
        assert operator.post("/challenges", json={"profile": "default"}).status_code == 201
        assert enroll(operator, "operator-may-not").status_code == 403
        assert operator.post("/eab-keys", json={"profile": "default"}).status_code == 403
    # A disabled token stops working at once.
    from tests.support.server import run_cli

    spare = create_token(server.data_dir, "admin", "spare")
    run_cli(["token", "disable", "spare"], server.data_dir)
    with client(server, spare) as disabled:
        assert disabled.get("/profiles").status_code == 401


def test_manual_enrollment_search_detail_revoke_and_crl(server: GatehouseServer,
                                                        tokens: dict[str, str]) -> None:
    with client(server, tokens["admin"]) as api:
        issued = enroll(api, "inventory-1")
        assert issued.status_code == 201, issued.text
        body = issued.json()
        assert body["state"] == "issued"
        serial = body["certificate"]["serial"]
        cert = x509.load_pem_x509_certificate(body["certificate"]["pem"].encode())
        assert format(cert.serial_number, "x") == serial

        for query in ({"serial": serial}, {"subject": "inventory-1"},
                      {"san": "dns:inventory-1.example.test"}, {"profile": "default"},
                      {"backend": "internal"}, {"status": "valid"},
                      {"expiring_before": "2999-01-01T00:00:00Z"}):
            found = api.get("/certificates", params=query).json()["items"]
            assert serial in [item["serial"] for item in found], query
        assert api.get("/certificates", params={"subject": "no-such-subject"}).json()["count"] == 0
        assert api.get("/certificates",
                       params={"expiring_before": "2000-01-01T00:00:00Z"}).json()["count"] == 0

        detail = api.get(f"/certificates/{serial.upper()}").json()
        assert detail["serial"] == serial and detail["protocol"] == "manual"
        assert detail["chain_pem"], "the chain is returned"
        issuer = x509.load_pem_x509_certificate(detail["chain_pem"][0].encode())
        assert issuer.subject == cert.issuer

        revoked = api.post(f"/certificates/{serial}/revoke", json={"reason": "keyCompromise"})
        assert revoked.status_code == 200 and revoked.json()["state"] == "done"
        again = api.post(f"/certificates/{serial}/revoke", json={"reason": "keyCompromise"})
        assert again.status_code == 409 and again.json()["error"] == "conflict"
        assert api.get("/certificates", params={"serial": serial}).json()["items"][0][
            "status"] == "revoked"

    crl = x509.load_der_x509_crl(httpx.get(f"{server.http_url}/crl/internal.crl").content)
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise


def test_held_requests_are_approved_or_denied(server: GatehouseServer,
                                              tokens: dict[str, str]) -> None:
    """Requests held by a manual-approval profile, from a real EST enrollment (an admin's
    own API enrollments skip approval by policy)."""
    with client(server, tokens["admin"]) as admin:
        assert admin.post("/users", json={"profile": "approval", "name": "device",
                                          "password": "device-password"}).status_code == 201
    est = httpx.Client(base_url=f"{server.https_url}/.well-known/est/approval",
                       verify=tls_context(server.root_pem), auth=("device", "device-password"))
    bodies = [base64.encodebytes(csr_der(make_csr(f"held-{i}")[0])) for i in range(2)]
    for body in bodies:
        answer = est.post("/simpleenroll", content=body,
                          headers={"content-type": "application/pkcs10"})
        assert answer.status_code == 202 and answer.headers["retry-after"], answer.text
    with client(server, tokens["operator"]) as operator:
        queue = operator.get("/requests", params={"state": "held", "profile": "approval"}).json()
        held = {item["subject"]: item["id"] for item in queue["items"]}
        first, second = held["CN=held-0"], held["CN=held-1"]
        approved = operator.post(f"/requests/{first}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] == "issued" and approved.json()["certificate"]["pem"]
        denied = operator.post(f"/requests/{second}/deny", json={"reason": "not ours"})
        assert denied.status_code == 200 and denied.json()["state"] == "denied"
        assert denied.json()["reason"] == "not ours"
        late = operator.post(f"/requests/{second}/approve")
        assert late.status_code == 409 and late.json()["error"] == "conflict"
        shown = operator.get(f"/requests/{first}").json()
        assert shown["state"] == "issued" and shown["certificate_serial"]
        assert operator.post("/requests/00000000-0000-0000-0000-000000000000/approve"
                             ).status_code == 404
    # The EST client asks again: the approved one gets its certificate, the denied one not.
    issued = est.post("/simpleenroll", content=bodies[0],
                      headers={"content-type": "application/pkcs10"})
    assert issued.status_code == 200 and issued.headers["content-type"].startswith(
        "application/pkcs7-mime")
    refused = est.post("/simpleenroll", content=bodies[1],
                       headers={"content-type": "application/pkcs10"})
    assert refused.status_code in (400, 403) and "not ours" in refused.text
    est.close()


def test_enrollment_errors_are_client_errors(server: GatehouseServer,
                                             tokens: dict[str, str]) -> None:
    with client(server, tokens["admin"]) as api:
        bad = api.post("/certificates", json={"csr": "not a csr"})
        assert bad.status_code == 400 and bad.json()["error"] == "malformed"
        unknown = api.post("/certificates", json={"profile": "nope",
                                                  "csr": csr_pem(make_csr("x")[0]).decode()})
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown-profile"
        not_json = api.post("/certificates", content=b"\xff{", headers={
            "content-type": "application/json"})
        assert not_json.status_code in (400, 422) and set(not_json.json()) == {"error", "detail"}
        assert api.get("/no-such-thing").json()["error"] == "not-found"
        wrong_method = api.delete("/certificates")
        assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["allow"]
        # The profile's rate limit holds for API enrollments too.
        answers = [enroll(api, f"limited-{i}", profile="limited").status_code for i in range(4)]
        assert answers == [201, 201, 201, 429]


def test_credentials_are_usable_and_stored_hashed(server: GatehouseServer,
                                                  tokens: dict[str, str]) -> None:
    db = Database(f"sqlite:///{server.data_dir / 'gatehouse.db'}")
    try:
        with client(server, tokens["operator"]) as operator:
            made = operator.post("/challenges", json={"profile": "default", "uses": 1,
                                                      "subject_pattern": "dev-.*"})
            assert made.status_code == 201
            secret = made.json()["challenge"]
            listed = operator.get("/challenges").json()
            assert made.json()["id"] in [c["id"] for c in listed]
            assert secret not in str(listed)
        import datetime as dt

        from gateway.errors import GatewayError

        with db.session() as session:
            principal = consume_challenge(session, profile="default", secret=secret,
                                          names=["dev-1"], now=dt.datetime.now(dt.UTC))
            assert principal.id == made.json()["id"]
        with db.session() as session, pytest.raises(GatewayError):
            consume_challenge(session, profile="default", secret=secret, names=["dev-1"],
                              now=dt.datetime.now(dt.UTC))

        with client(server, tokens["admin"]) as admin:
            user = admin.post("/users", json={"profile": "default", "name": "alice",
                                              "password": "correct horse"})
            assert user.status_code == 201 and "password" not in user.json()
            assert UserDirectory(db, cache_seconds=0).verify("default", "alice", "correct horse")
            assert admin.post("/users/default/alice/disable").json()["disabled"] is True
            assert not UserDirectory(db, cache_seconds=0).verify("default", "alice",
                                                                 "correct horse")
            assert "alice" in [u["name"] for u in admin.get("/users").json()]

            key = admin.post("/eab-keys", json={"profile": "default"}).json()
            assert key["kid"] and len(key["hmac_key"]) >= 43
            keys = admin.get("/eab-keys").json()
            assert next(k for k in keys if k["kid"] == key["kid"])["disabled"] is False
            assert admin.post(f"/eab-keys/{key['kid']}/disable").json()["disabled"] is True
            assert admin.post("/eab-keys/eab-unknown/disable").status_code == 404
            assert key["hmac_key"] not in str(admin.get("/eab-keys").json())

            profiles = admin.get("/profiles").json()
            assert {"default", "approval", "limited"} <= {p["name"] for p in profiles}
            assert admin.get("/profiles/approval").json()["approval"] == "manual"
            backends = admin.get("/backends").json()
            assert backends[0]["name"] == "internal" and backends[0]["ok"] is True
    finally:
        db.dispose()


def test_every_call_is_audited(server: GatehouseServer, tokens: dict[str, str]) -> None:
    with client(server, tokens["auditor"]) as auditor:
        auditor.get("/profiles")
        auditor.post("/challenges", json={})  # refused: still recorded
        events = auditor.get("/audit", params={"actor": "token:auditor-e2e", "limit": 500}).json()
        actions = [(e["action"], e["outcome"], e["details"]["status"]) for e in events["items"]]
        assert ("admin.list_profiles", "ok", 200) in actions
        assert ("admin.create_challenge", "denied", 403) in actions
        anonymous = auditor.get("/audit", params={"actor": "anonymous"}).json()["items"]
        assert any(e["details"]["status"] == 401 for e in anonymous)
        issued = auditor.get("/audit", params={"action": "certificate.",
                                               "limit": 1000}).json()["items"]
        assert any(e["action"] == "certificate.revoked" and
                   e["actor"] == "token:admin-e2e" for e in issued)
        window = auditor.get("/audit", params={"since": "2999-01-01T00:00:00Z"}).json()
        assert window["count"] == 0
        assert auditor.get("/audit", params={"since": "1700000000"}).status_code == 422


SCHEMATHESIS_CONFIG = """
[[operations]]
include-path = "/admin/api/certificates"
include-method = "POST"
# A schema-valid string is not yet a valid CSR: 400 malformed / bad-csr is the right answer.
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""


def test_schemathesis_finds_no_server_error_or_schema_violation(
        server: GatehouseServer, tokens: dict[str, str], tmp_path: Path) -> None:
    st = shutil.which("st") or shutil.which("schemathesis")
    assert st, "schemathesis is not installed (pip install schemathesis)"
    # Real resources for the path parameters, so detail / revoke / approve / deny run for
    # real (once, then 409) rather than only answering 404.
    with client(server, tokens["admin"]) as api:
        serial = enroll(api, "fuzzed").json()["certificate"]["serial"]
        api.post("/users", json={"profile": "approval", "name": "fuzz", "password": "fuzz-pass"})
    with httpx.Client(verify=tls_context(server.root_pem), auth=("fuzz", "fuzz-pass")) as est:
        held = est.post(f"{server.https_url}/.well-known/est/approval/simpleenroll",
                        content=base64.encodebytes(csr_der(make_csr("fuzz-held")[0])),
                        headers={"content-type": "application/pkcs10"})
        assert held.status_code == 202
    with client(server, tokens["admin"]) as api:
        request_id = next(item["id"] for item in api.get(
            "/requests", params={"state": "held"}).json()["items"]
            if item["subject"] == "CN=fuzz-held")
    (tmp_path / "schemathesis.toml").write_text(
        SCHEMATHESIS_CONFIG + f'\n[parameters]\n"path.serial" = "{serial}"\n'
        f'"path.request_id" = "{request_id}"\n')
    result = subprocess.run(
        [st, "--config-file", str(tmp_path / "schemathesis.toml"), "run",
         f"{server.https_url}/admin/openapi.json",
         "-H", f"Authorization: Bearer {tokens['admin']}", "--tls-verify", str(server.root_pem),
         "--include-path-regex", "^/admin/api", "--checks", "all", "--max-examples", "12",
         "--workers", "1", "--no-color", "--seed", "20261126"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    with client(server, tokens["auditor"]) as auditor:  # the real resources were exercised
        revokes = auditor.get("/audit", params={"action": "admin.revoke_certificate",
                                                "serial": serial, "limit": 1000}).json()
        assert 200 in {e["details"]["status"] for e in revokes["items"]}
        approvals = auditor.get("/audit", params={"request_id": request_id}).json()
        assert {"admin.approve_request", "admin.deny_request"} & {
            e["action"] for e in approvals["items"] if e["details"].get("status") == 200}
    assert "internal error" not in server.log()
