"""Rule 12: no weak transport option is on by default.

* SCEP refuses SHA-1 and DES/3DES requests (CertRep FAILURE badAlg) and does not advertise
  them unless the profile sets ``legacy_algorithms: true`` (positive control).
* A Vault backend at ``http://`` stops start-up unless ``allow_insecure_http: true``.
* A SCEP webhook URL must be https (``webhook_allow_http`` for labs) and every call is
  signed: ``X-Gatehouse-Signature: t=<unix>,v1=<HMAC-SHA256("<t>." + body)>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.security.conftest import profile_like_default, start_configured
from tests.support.server import GatehouseServer, free_port, run_cli
from tests.unit.protocols.scep.client import (
    Client,
    csr_with_challenge,
    ra_from_ca_ra_cert,
    self_signed,
)
from tests.unit.protocols.scep.server_setup import challenge, http_get, http_post

pytestmark = pytest.mark.e2e

SECRET_ENV = "GH_SEC_WEBHOOK_KEY"
SECRET = "a-webhook-signing-key-only-the-receiver-knows"
ALLOW = "let-me-in"


# -- an https webhook receiver with a test CA ----------------------------------------------

@dataclass
class Receiver:
    port: int
    ca_pem: bytes
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


def _tls_files(directory: Path) -> tuple[Path, Path, bytes]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Webhook Test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    cert_path, key_path = directory / "hook.pem", directory / "hook.key"
    cert_path.write_bytes(leaf.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, ca.public_bytes(pem)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    cert_path, key_path, ca_pem = _tls_files(tmp_path_factory.mktemp("hook-tls"))
    found = Receiver(free_port(), ca_pem)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            found.calls.append(({k.lower(): v for k, v in self.headers.items()}, raw))
            allow = json.loads(raw).get("challenge") == ALLOW
            answer = json.dumps({"allow": allow}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", found.port), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield found
    server.shutdown()
    server.server_close()


def verify_signature(header: str, body: bytes, key: bytes, *, tolerance: int = 300) -> bool:
    """What a receiver does (docs/security.md, rule 12)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, given = int(fields["t"]), fields["v1"]
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


# -- the server ---------------------------------------------------------------------------

def _lab_vault(insecure: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "vault", "url": "http://127.0.0.1:9/", "role": "r",
                             "auth": {"method": "token", "token_env": "GH_SEC_NO_TOKEN"}}
    if insecure:
        entry["allow_insecure_http"] = True
    return entry


@pytest.fixture(scope="module")
def gh(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[GatehouseServer]:
    def edit(config: dict[str, Any], data_dir: Path) -> None:
        (data_dir / "hook-ca.pem").write_bytes(receiver.ca_pem)
        profile_like_default(config, "legacy", scep={"legacy_algorithms": True})
        profile_like_default(config, "hook", scep={
            "challenge": "webhook", "webhook_url": f"https://127.0.0.1:{receiver.port}/check",
            "webhook_secret_env": SECRET_ENV, "webhook_ca_cert": "hook-ca.pem",
            "webhook_timeout": 5})
        # Labs opt in explicitly: both load (positive controls for the refusals below).
        profile_like_default(config, "hooklab", scep={
            "challenge": "webhook", "webhook_url": f"http://127.0.0.1:{free_port()}/",
            "webhook_allow_http": True, "webhook_secret_env": SECRET_ENV})
        config["backends"]["lab-vault"] = _lab_vault(insecure=True)

    server = start_configured(tmp_path_factory, "transport", edit, env={SECRET_ENV: SECRET})
    yield server
    server.stop()


def _client(server: GatehouseServer, path: str, **kwargs: Any) -> Client:
    ra = ra_from_ca_ra_cert(http_get(f"{server.http_url}{path}?operation=GetCACert")[2])[0]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Client(ra_der=ra, key=key, signer=self_signed(key), **kwargs)


def _enroll(server: GatehouseServer, path: str, secret: str, cn: str,
            **kwargs: Any) -> tuple[str, str | None]:
    client = _client(server, path, **kwargs)
    status, _, body = http_post(f"{server.http_url}{path}?operation=PKIOperation",
                                client.pkcs_req(csr_with_challenge(client.key, cn, secret)))
    assert status == 200, body
    reply = client.read(body)
    return reply.status, reply.fail_info


# -- SCEP algorithms ------------------------------------------------------------------------

@pytest.mark.parametrize(("digest", "cipher"), [("sha1", "aes256_cbc"), ("sha256", "des"),
                                                ("sha256", "tripledes_3key"), ("sha1", "des")])
def test_default_profile_refuses_legacy_algorithms(gh: GatehouseServer, digest: str,
                                                   cipher: str) -> None:
    status, fail_info = _enroll(gh, "/scep", challenge(gh.data_dir), "old",
                                digest=digest, cipher=cipher)
    assert (status, fail_info) == ("2", "0")  # FAILURE badAlg


@pytest.mark.parametrize(("digest", "cipher"), [("sha256", "aes256_cbc"),
                                                ("sha512", "aes128_cbc")])
def test_default_profile_accepts_aes_and_sha2(gh: GatehouseServer, digest: str,
                                              cipher: str) -> None:
    status, _ = _enroll(gh, "/scep", challenge(gh.data_dir), "modern", digest=digest,
                        cipher=cipher)
    assert status == "0"


def test_legacy_switch_accepts_sha1_and_des(gh: GatehouseServer) -> None:
    status, _ = _enroll(gh, "/scep/legacy", challenge(gh.data_dir, "legacy"), "old-device",
                        digest="sha1", cipher="des")
    assert status == "0"
    assert "legacy algorithms" in gh.log_path.read_text()  # the start-up WARNING


def test_getcacaps_advertises_only_what_is_accepted(gh: GatehouseServer) -> None:
    caps = set(http_get(f"{gh.http_url}/scep?operation=GetCACaps")[2].decode().split())
    assert {"AES", "SHA-256"} <= caps
    assert not caps & {"SHA-1", "DES3", "DES"}
    legacy = set(http_get(f"{gh.http_url}/scep/legacy?operation=GetCACaps")[2].decode().split())
    assert {"SHA-1", "DES3"} <= legacy


# -- webhook ----------------------------------------------------------------------------------

def test_webhook_call_is_signed_over_https(gh: GatehouseServer, receiver: Receiver) -> None:
    before = len(receiver.calls)
    status, _ = _enroll(gh, "/scep/hook", ALLOW, "hooked")
    assert status == "0"
    headers, body = receiver.calls[-1]
    assert len(receiver.calls) == before + 1
    signature = headers["x-gatehouse-signature"]
    assert verify_signature(signature, body, SECRET.encode())
    assert not verify_signature(signature, body, b"another key")
    assert not verify_signature(signature, body + b" ", SECRET.encode())
    assert json.loads(body)["challenge"] == ALLOW


def test_webhook_refusal_still_refuses(gh: GatehouseServer, receiver: Receiver) -> None:
    status, _ = _enroll(gh, "/scep/hook", "not-on-the-list", "hooked2")
    assert status == "2"
    assert verify_signature(receiver.calls[-1][0]["x-gatehouse-signature"],
                            receiver.calls[-1][1], SECRET.encode())


# -- refused at start-up --------------------------------------------------------------------

def _up_with(gh: GatehouseServer, tmp_path: Path, change: Any) -> tuple[int, str]:
    data_dir = tmp_path / "data"
    run_cli(["init"], data_dir)
    path = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_cli(["up", "--https", f"127.0.0.1:{free_port()}", "--http", ""], data_dir,
                     check=False, timeout=60, env={SECRET_ENV: SECRET})
    return result.returncode, result.stdout + result.stderr


def test_http_vault_url_refused_at_start(gh: GatehouseServer, tmp_path: Path) -> None:
    def change(config: dict[str, Any]) -> None:
        config["backends"]["lab-vault"] = _lab_vault(insecure=False)

    code, output = _up_with(gh, tmp_path, change)
    assert code != 0
    assert "lab-vault" in output and "allow_insecure_http" in output
    # Positive control: the running server has the same backend with the flag, and warned.
    assert http_get(f"{gh.http_url}/healthz")[0] == 200
    assert "Vault backend over plain HTTP" in gh.log_path.read_text()


def test_http_webhook_url_refused_at_start(gh: GatehouseServer, tmp_path: Path) -> None:
    def change(config: dict[str, Any]) -> None:
        profile_like_default(config, "hooklab", scep={
            "challenge": "webhook", "webhook_url": "http://127.0.0.1:9/",
            "webhook_secret_env": SECRET_ENV})

    code, output = _up_with(gh, tmp_path, change)
    assert code != 0
    assert "webhook_url" in output and "webhook_allow_http" in output
    assert "SCEP webhook over plain HTTP" in gh.log_path.read_text()  # the lab profile


def test_webhook_without_signing_key_refused_at_start(gh: GatehouseServer,
                                                      tmp_path: Path) -> None:
    def change(config: dict[str, Any]) -> None:
        profile_like_default(config, "nokey", scep={
            "challenge": "webhook", "webhook_url": "https://hooks.example.test/"})

    code, output = _up_with(gh, tmp_path, change)
    assert code != 0 and "webhook_secret_env" in output
