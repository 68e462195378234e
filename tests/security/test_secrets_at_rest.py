"""Rule 8: secrets at rest.

After ``gatehouse up`` on a fresh directory the data directory is 0700 and every file in
it 0600; the CA keys are encrypted under a key derived with PBKDF2 at >= 600,000
iterations; a SCEP enrollment leaves no challenge password in the database; EST password
hashes use scrypt N = 2**17 and an older, cheaper hash is re-hashed at the next successful
login.  Positive controls: the enrollments and the login succeed.
"""

from __future__ import annotations

import base64
import sqlite3
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth.secrets import hash_secret
from tests.security.conftest import start_configured
from tests.support.pki import csr_der, make_csr
from tests.support.server import GatehouseServer, run_cli
from tests.unit.protocols.scep.client import Client as ScepClient
from tests.unit.protocols.scep.client import csr_with_challenge, ra_from_ca_ra_cert, self_signed
from tests.unit.protocols.scep.server_setup import challenge, http_get, http_post

pytestmark = pytest.mark.e2e

PASSWORD = "rule-8-password"
LEGACY_PASSWORD = "legacy-user-password"


def _users(data_dir: Path) -> None:
    run_cli(["user", "add", "default", "dev"], data_dir, stdin=PASSWORD + "\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    server = start_configured(tmp_path_factory, "at-rest", setup=_users)
    yield server
    server.stop()


def _db(server: GatehouseServer) -> sqlite3.Connection:
    return sqlite3.connect(server.data_dir / "gatehouse.db", timeout=30)


def _db_bytes(server: GatehouseServer) -> bytes:
    files = [server.data_dir / f"gatehouse.db{suffix}" for suffix in ("", "-wal", "-journal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def _enroll(server: GatehouseServer, user: str, password: str, cn: str) -> httpx.Response:
    body = base64.encodebytes(csr_der(make_csr(cn)[0]))
    with httpx.Client(verify=ssl.create_default_context(cafile=str(server.root_pem)),
                      timeout=60) as client:
        return client.post(f"{server.https_url}/.well-known/est/simpleenroll", content=body,
                           auth=(user, password), headers={"content-type": "application/pkcs10"})


def test_data_directory_is_owner_only(server: GatehouseServer) -> None:
    assert _enroll(server, "dev", PASSWORD, "perm.example.test").status_code == 200  # control
    data_dir = server.data_dir
    loose = []
    for path in (data_dir, *data_dir.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        want = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_IMODE(mode) != want:
            loose.append(f"{oct(stat.S_IMODE(mode))} {path.relative_to(data_dir)}")
    assert (data_dir / "gatehouse.db").exists() and (data_dir / "ca" / "root.key").exists()
    assert loose == [], loose


def _pbkdf2_iterations(path: Path) -> int:
    _type, _headers, der = asn1_pem.unarmor(path.read_bytes())
    algorithm = asn1_keys.EncryptedPrivateKeyInfo.load(der)["encryption_algorithm"]
    assert algorithm["algorithm"].native == "pbes2"
    kdf = algorithm["parameters"]["key_derivation_func"]
    assert kdf["algorithm"].native == "pbkdf2"
    count: int = kdf["parameters"]["iteration_count"].native
    return count


def test_ca_keys_are_encrypted_with_a_costly_kdf(server: GatehouseServer) -> None:
    ca = server.data_dir / "ca"
    for key in (ca / "root.key", ca / "issuers" / "1" / "key.pem"):
        assert _pbkdf2_iterations(key) >= 600_000, key


def test_scep_challenge_password_is_not_stored(server: GatehouseServer) -> None:
    secret = challenge(server.data_dir)
    status, _ctype, body = http_get(f"{server.http_url}/scep?operation=GetCACert")
    assert status == 200
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = ScepClient(ra_der=ra_from_ca_ra_cert(body)[0], key=key, signer=self_signed(key))
    status, _ctype, answer = http_post(f"{server.http_url}/scep?operation=PKIOperation",
                                       client.pkcs_req(csr_with_challenge(key, "rest-1", secret)))
    reply = client.read(answer)
    assert reply.status == "0", reply.fail_text  # control: the enrollment succeeds
    assert secret.encode() not in _db_bytes(server)
    with _db(server) as db:
        stored = [row[0] for row in db.execute("SELECT csr_der FROM requests WHERE protocol = 'scep'")]
    assert stored
    for der in stored:
        attributes = asn1_csr.CertificationRequest.load(der)["certification_request_info"][
            "attributes"]
        assert "challenge_password" not in [a["type"].native for a in attributes]


def _hash_of(server: GatehouseServer, name: str) -> str:
    with _db(server) as db:
        row = db.execute("SELECT secret_hash FROM credentials WHERE kind = 'password' AND "
                         "name = ?", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def test_password_hashes_use_owasp_scrypt_cost(server: GatehouseServer) -> None:
    scheme, log_n, r, p, *_ = _hash_of(server, "dev").split("$")
    assert (scheme, int(log_n), int(r), int(p)) == ("scrypt", 17, 8, 1)


def test_an_older_hash_is_rehashed_at_the_next_login(server: GatehouseServer) -> None:
    run_cli(["user", "add", "default", "legacy"], server.data_dir, stdin=LEGACY_PASSWORD + "\n")
    old = hash_secret(LEGACY_PASSWORD, cost=(14, 8, 1))  # what earlier versions stored
    with _db(server) as db:
        db.execute("UPDATE credentials SET secret_hash = ? WHERE kind = 'password' AND "
                   "name = 'legacy'", (old,))
    assert _enroll(server, "legacy", "wrong-password", "legacy.example.test").status_code == 401
    assert _hash_of(server, "legacy") == old  # a failed login changes nothing
    assert _enroll(server, "legacy", LEGACY_PASSWORD, "legacy.example.test").status_code == 200
    assert _hash_of(server, "legacy").startswith("scrypt$17$8$1$")
