"""ACME over real TLS against the server process (two workers sharing SQLite): the
protocol's states and every bad-input case answered with the right problem document."""

from __future__ import annotations

import base64
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.dns_server import DnsTestServer
from tests.support.server import GatehouseServer, free_port, run_cli
from tests.unit.protocols.acme.signer import Client, Key, b64, hmac_jws, jws

pytestmark = pytest.mark.e2e
PROBLEM = "urn:ietf:params:acme:error:"


class Http01(http.server.ThreadingHTTPServer):
    tokens: dict[str, str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Http01

    def do_GET(self) -> None:
        token = self.path.rsplit("/", 1)[-1]
        body = self.server.tokens.get(token)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *_args: Any) -> None:
        pass


@dataclass
class Env:
    server: GatehouseServer
    http: httpx.Client
    tokens: dict[str, str]

    def directory(self, profile: str | None = None) -> str:
        return self.server.https_url + (f"/acme/{profile}/directory" if profile else "/acme/directory")

    def client(self, profile: str | None = None, key: Key | None = None) -> Client:
        return Client(self.http, self.directory(profile), key)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp("acme-e2e") / "gatehouse-data"
    run_cli(["init"], data_dir)
    path = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(path.read_text())
    default = config["profiles"]["default"]
    config["profiles"]["corp"] = {**default, "sans": {"dns": {"allow": ["**.corp.test"]},
                                                      "ip": {"allow": ["10.0.0.0/8"]}},
                                  "acme": {"allow_validity_request": True,
                                           "terms_of_service": "https://ca.test/tos"}}
    config["profiles"]["tight"] = {**default, "acme": {"orders_per_account": 1}}
    config["profiles"]["partners"] = {**default, "acme": {"eab_required": True}}
    config["profiles"]["manual"] = {**default, "approval": "manual"}
    config["profiles"]["default"]["acme"] = {"profiles": {"corp": "corporate names only"}}
    path.write_text(yaml.safe_dump(config))
    dns = DnsTestServer().start()
    web = Http01(("127.0.0.1", 0), _Handler)
    web.tokens = {}
    threading.Thread(target=web.serve_forever, daemon=True).start()
    server = GatehouseServer(data_dir, workers=2, env={
        "GATEHOUSE_ACME_HTTP01_PORT": str(web.server_address[1]),
        "GATEHOUSE_ACME_TLSALPN01_PORT": str(free_port()),
        "GATEHOUSE_ACME_DNS_RESOLVER": dns.address,
        "GATEHOUSE_ACME_VALIDATION_ALLOW": "127.0.0.0/8,::1/128"}).start()
    with httpx.Client(verify=ssl.create_default_context(cafile=str(server.root_pem)),
                      timeout=30) as http:
        yield Env(server, http, web.tokens)
    server.stop()
    web.shutdown()
    dns.stop()


def problem(response: httpx.Response, kind: str, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers.get("Replay-Nonce"), "every ACME response carries a nonce"
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + kind, body
    return body


def csr_b64(names: list[str], key: Any = None, cn: str | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    builder = builder.add_extension(x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in names]), critical=False)
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return b64(der)


def wait(client: Client, url: str, until: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.post(url, None).json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def issue(env: Env, client: Client, names: list[str], key: Any = None,
          until: frozenset[str] = frozenset({"valid", "invalid"})) -> tuple[str, dict[str, Any]]:
    """The whole http-01 flow; returns the order URL and the final order."""
    response = client.post(client.directory["newOrder"],
                           {"identifiers": [{"type": "dns", "value": n} for n in names]})
    assert response.status_code == 201, response.text
    order_url, order = response.headers["Location"], response.json()
    assert order["status"] == "pending"
    for authz_url in order["authorizations"]:
        authz = client.post(authz_url, None).json()
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        env.tokens[challenge["token"]] = client.key_authorization(challenge["token"])
        assert client.post(challenge["url"], {}).json()["status"] in ("processing", "valid")
        assert wait(client, authz_url, {"valid", "invalid"})["status"] == "valid"
    assert wait(client, order_url, {"ready"})["status"] == "ready"
    final = client.post(order["finalize"], {"csr": csr_b64(names, key)})
    assert final.status_code == 200, final.text
    return order_url, wait(client, order_url, set(until))


def test_directory_and_nonces(env: Env) -> None:
    directory = env.http.get(env.directory()).json()
    assert {"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange",
            "renewalInfo"} <= set(directory)
    assert directory["meta"]["externalAccountRequired"] is False
    assert set(directory["meta"]["profiles"]) == {"default", "corp"}
    assert env.http.get(env.directory("partners")).json()["meta"]["externalAccountRequired"]
    head = env.http.head(directory["newNonce"])
    get = env.http.get(directory["newNonce"])
    assert head.status_code == 200 and get.status_code == 204
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    assert head.headers["Cache-Control"] == "no-store"
    problem(env.http.get(env.server.https_url + "/acme/nope/new-nonce"), "malformed", 404)


def test_full_flow_states_download_and_ari(env: Env) -> None:
    client = env.client()
    assert client.register(contact=["mailto:a@example.com"]).status_code == 201
    order_url, order = issue(env, client, ["flow.example.test", "www.flow.example.test"])
    assert order["status"] == "valid"
    response = client.post(order["certificate"], None)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pem-certificate-chain"
    certs = x509.load_pem_x509_certificates(response.content)
    assert len(certs) >= 2
    sans = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"flow.example.test",
                                                            "www.flow.example.test"}
    # Finalizing twice is refused, and the order stays valid.
    again = client.post(order["finalize"], {"csr": csr_b64(["flow.example.test"])})
    problem(again, "orderNotReady", 403)
    # ARI (RFC 9773): a window inside the validity period.
    aki = certs[0].extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = certs[0].serial_number
    cert_id = f"{b64(aki.key_identifier)}.{b64(serial.to_bytes((serial.bit_length() + 8) // 8, 'big'))}"
    info = env.http.get(f"{client.directory['renewalInfo']}/{cert_id}")
    assert info.status_code == 200 and int(info.headers["Retry-After"]) > 0
    window = info.json()["suggestedWindow"]
    assert certs[0].not_valid_before_utc.isoformat() < window["start"].replace("Z", "+00:00") \
        < window["end"].replace("Z", "+00:00")
    problem(env.http.get(f"{client.directory['renewalInfo']}/AAAA.AAAA"), "malformed", 404)
    # 'replaces' never crosses profiles (issue #10 rule 2): not into the 'corp' profile.
    crossed = problem(client.post(client.directory["newOrder"], {
        "identifiers": [{"type": "dns", "value": "flow.corp.test"}], "profile": "corp",
        "replaces": cert_id}), "malformed", 400)
    assert "not issued under profile 'corp'" in crossed["detail"], crossed
    # A renewal naming the old certificate in 'replaces'.
    replaced = client.post(client.directory["newOrder"], {
        "identifiers": [{"type": "dns", "value": "flow.example.test"},
                        {"type": "dns", "value": "www.flow.example.test"}], "replaces": cert_id})
    assert replaced.status_code == 201 and replaced.json()["replaces"] == cert_id
    # The orders list names the order.
    orders = client.post(client.kid + "/orders", None).json()["orders"]
    assert order_url in orders


def test_revocation_by_certificate_key_and_account(env: Env) -> None:
    client = env.client()
    client.register()
    cert_key = ec.generate_private_key(ec.SECP256R1())
    _, order = issue(env, client, ["revoke.example.test"], key=cert_key)
    pem = client.post(order["certificate"], None).content
    leaf = x509.load_pem_x509_certificates(pem)[0]
    der = b64(leaf.public_bytes(serialization.Encoding.DER))
    stranger = env.client()
    stranger.register()
    problem(stranger.post(stranger.directory["revokeCert"], {"certificate": der}),
            "unauthorized", 403)
    problem(client.post(client.directory["revokeCert"], {"certificate": der, "reason": 7}),
            "badRevocationReason", 400)
    key = Key()
    key.private = cert_key
    ok = client.post(client.directory["revokeCert"], {"certificate": der, "reason": 1},
                     use_jwk=True, key=key)
    assert ok.status_code == 200, ok.text
    problem(client.post(client.directory["revokeCert"], {"certificate": der}),
            "alreadyRevoked", 400)
    assert env.http.get(f"{client.directory['renewalInfo']}/x").status_code == 400


def test_bad_jws_input(env: Env) -> None:
    client = env.client()
    client.register()
    url = client.directory["newOrder"]
    order = {"identifiers": [{"type": "dns", "value": "a.example.test"}]}
    problem(client.post(url, order, content_type="application/json"), "malformed", 415)
    for garbage in (b"", b"{", b"[1]", b'{"protected":"!!","payload":"","signature":""}'):
        response = env.http.post(url, content=garbage,
                                 headers={"Content-Type": "application/jose+json"})
        problem(response, "malformed", 400)
    nonce = client.nonce()
    signed = jws(client.key, url, order, nonce=nonce, kid=client.kid)
    assert client.post(url, None, body=signed).status_code == 201
    problem(client.post(url, None, body=signed), "badNonce", 400)  # replayed
    problem(client.post(url, None, body=jws(client.key, url, order, nonce="bm9ub25jZQ",
                                            kid=client.kid)), "badNonce", 400)
    wrong_url = jws(client.key, client.directory["newAccount"], order, nonce=client.nonce(),
                    kid=client.kid)
    problem(client.post(url, None, body=wrong_url), "unauthorized", 403)
    problem(client.post(url, None, body=jws(client.key, url, order, nonce=client.nonce(),
                                            kid=client.kid, alg="HS256")),
            "badSignatureAlgorithm", 400)
    problem(client.post(url, None, body=jws(Key(), url, order, nonce=client.nonce(),
                                            kid=client.kid)), "malformed", 400)
    problem(client.post(url, None, body=jws(client.key, url, order, nonce=client.nonce(),
                                            kid=client.kid[:-3] + "xyz")),
            "accountDoesNotExist", 400)
    problem(client.post(url, order, use_jwk=True), "malformed", 400)  # jwk where kid needed


def test_bad_account_input(env: Env) -> None:
    client = env.client(key=Key("RS256", rsa_bits=1024))
    problem(client.register(), "badPublicKey", 400)
    client = env.client(key=Key("EdDSA"))
    problem(client.register(onlyReturnExisting=True), "accountDoesNotExist", 400)
    problem(client.register(contact=["tel:+1555"]), "unsupportedContact", 400)
    problem(client.register(contact=["mailto:not-an-address"]), "invalidContact", 400)
    assert client.register(contact=["mailto:ok@example.com"]).status_code == 201
    again = client.register()
    assert again.status_code == 200 and again.headers["Location"] == client.kid
    updated = client.post(client.kid, {"contact": ["mailto:new@example.com"]}).json()
    assert updated["contact"] == ["mailto:new@example.com"]
    assert client.post(client.kid, {"status": "deactivated"}).json()["status"] == "deactivated"
    problem(client.post(client.directory["newOrder"],
                        {"identifiers": [{"type": "dns", "value": "x.example.test"}]}),
            "unauthorized", 403)
    corp = env.client("corp")
    problem(corp.register(termsOfServiceAgreed=False), "malformed", 400)  # ToS must be agreed
    partners = env.client("partners")
    problem(partners.register(), "externalAccountRequired", 400)
    binding = hmac_jws("eab-unknown", b"k" * 32, partners.directory["newAccount"], partners.key.jwk)
    problem(partners.register(externalAccountBinding=binding), "unauthorized", 403)
    out = run_cli(["eab", "create", "partners"], env.server.data_dir).stdout
    fields = dict(line.split(": ", 1) for line in out.strip().splitlines())
    key = base64.urlsafe_b64decode(fields["hmac_key"] + "==")
    wrong = hmac_jws(fields["kid"], b"x" * 32, partners.directory["newAccount"], partners.key.jwk)
    problem(partners.register(externalAccountBinding=wrong), "unauthorized", 403)
    good = hmac_jws(fields["kid"], key, partners.directory["newAccount"], partners.key.jwk)
    response = partners.register(externalAccountBinding=good)
    assert response.status_code == 201, response.text
    assert response.json()["externalAccountBinding"]["kid"] == fields["kid"]


def test_order_input_and_policy(env: Env) -> None:
    client = env.client()
    client.register()
    url = client.directory["newOrder"]
    problem(client.post(url, {"identifiers": []}), "malformed", 400)
    problem(client.post(url, {"identifiers": [{"type": "email", "value": "a@b.test"}]}),
            "unsupportedIdentifier", 400)
    problem(client.post(url, {"identifiers": [{"type": "dns", "value": "a.example.test"}],
                              "notAfter": "2030-01-01T00:00:00Z"}), "malformed", 400)
    problem(client.post(url, {"identifiers": [{"type": "dns", "value": "a.example.test"}],
                              "profile": "nope"}), "invalidProfile", 400)
    # The profile selected by the order's 'profile' field applies its policy.
    body = problem(client.post(url, {"identifiers": [{"type": "dns", "value": "evil.test"},
                                                     {"type": "dns", "value": "ok.corp.test"}],
                                     "profile": "corp"}), "rejectedIdentifier", 400)
    assert body["subproblems"][0]["identifier"] == {"type": "dns", "value": "evil.test"}
    made = client.post(url, {"identifiers": [{"type": "dns", "value": "ok.corp.test"}],
                             "profile": "corp"})
    assert made.status_code == 201 and made.json()["profile"] == "corp"
    # Wildcards get dns-01 only; IP identifiers never dns-01 (RFC 8738 §7).
    wildcard = client.post(url, {"identifiers": [{"type": "dns", "value": "*.w.example.test"},
                                                 {"type": "ip", "value": "127.0.0.1"}]}).json()
    kinds = {}
    for authz_url in wildcard["authorizations"]:
        authz = client.post(authz_url, None).json()
        kinds[authz["identifier"]["value"]] = {c["type"] for c in authz["challenges"]}
        if authz["identifier"]["value"] == "w.example.test":
            assert authz["wildcard"] is True
    assert kinds == {"w.example.test": {"dns-01"}, "127.0.0.1": {"http-01", "tls-alpn-01"}}
    # Finalize before the order is ready; unknown and foreign orders.
    problem(client.post(wildcard["finalize"], {"csr": csr_b64(["*.w.example.test"])}),
            "orderNotReady", 403)
    problem(client.post(client.kid.replace("/acct/", "/order/"), None), "malformed", 404)
    other = env.client()
    other.register()
    problem(other.post(made.headers["Location"], None), "unauthorized", 403)


def test_csr_mismatch_and_rate_limit(env: Env) -> None:
    client = env.client()
    client.register()
    response = client.post(client.directory["newOrder"],
                           {"identifiers": [{"type": "dns", "value": "csr.example.test"}]})
    order_url, order = response.headers["Location"], response.json()
    authz = client.post(order["authorizations"][0], None).json()
    challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
    env.tokens[challenge["token"]] = client.key_authorization(challenge["token"])
    client.post(challenge["url"], {})
    assert wait(client, order_url, {"ready"})["status"] == "ready"
    problem(client.post(order["finalize"], {"csr": csr_b64(["csr.example.test", "extra.test"])}),
            "badCSR", 400)
    problem(client.post(order["finalize"], {"csr": "bm90IGEgY3Ny"}), "badCSR", 400)
    problem(client.post(order["finalize"], {"csr": 5}), "malformed", 400)
    assert client.post(order_url, None).json()["status"] == "ready"  # still finalizable
    tight = env.client("tight")
    tight.register()
    url = tight.directory["newOrder"]
    assert tight.post(url, {"identifiers": [{"type": "dns", "value": "r1.test"}]}).status_code == 201
    limited = tight.post(url, {"identifiers": [{"type": "dns", "value": "r2.test"}]})
    problem(limited, "rateLimited", 429)
    assert int(limited.headers["Retry-After"]) > 0


def test_failed_validation_invalidates_order(env: Env) -> None:
    client = env.client()
    client.register()
    response = client.post(client.directory["newOrder"],
                           {"identifiers": [{"type": "dns", "value": "fail.example.test"}]})
    order_url, order = response.headers["Location"], response.json()
    authz = client.post(order["authorizations"][0], None).json()
    challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
    env.tokens[challenge["token"]] = "wrong.answer"
    client.post(challenge["url"], {})
    final = wait(client, order_url, {"invalid"}, timeout=60)
    assert final["status"] == "invalid"
    authz = client.post(order["authorizations"][0], None).json()
    assert authz["status"] == "invalid"
    errors = [c["error"] for c in authz["challenges"] if "error" in c]
    assert [e["type"] for e in errors] == [PROBLEM + "incorrectResponse"]
    assert errors[0]["identifier"] == {"type": "dns", "value": "fail.example.test"}
    assert final["error"]["subproblems"][0]["identifier"]["value"] == "fail.example.test"


def test_held_request_keeps_order_processing_until_approved(env: Env) -> None:
    client = env.client("manual")
    client.register()
    order_url, order = issue(env, client, ["held.example.test"], until=frozenset({"processing"}))
    assert order["status"] == "processing"
    polled = client.post(order_url, None)
    assert polled.json()["status"] == "processing"
    assert int(polled.headers["Retry-After"]) >= 1
    listing = run_cli(["requests", "list", "--state", "held", "--profile", "manual"],
                      env.server.data_dir).stdout
    request_id = next(line.split()[0] for line in listing.splitlines()[1:] if "acme" in line)
    run_cli(["requests", "approve", request_id], env.server.data_dir)
    final = wait(client, order_url, {"valid", "invalid"})
    assert final["status"] == "valid", final
    assert client.post(final["certificate"], None).status_code == 200
