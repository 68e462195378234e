"""Rule 2: a renewal never crosses profiles.

A certificate the gateway issued under profile ``a`` (here by the CLI, i.e. by another
door than SCEP) proves nothing on profile ``b``: a SCEP RenewalReq signed with it to
``/scep/b`` is refused (CertRep FAILURE, no certificate), and a PKCSReq signed with it is
a first enrollment there that needs ``b``'s challenge.  Positive controls: the same
certificate renews on its own profile, and a ``b`` certificate renews on ``b``.  Driven
over the real server with the Python SCEP client (AES/SHA-256).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.security.conftest import profile_like_default, start_configured
from tests.support.server import GatehouseServer, run_cli
from tests.unit.protocols.scep.client import (
    Client,
    Reply,
    csr_with_challenge,
    ra_from_ca_ra_cert,
    self_signed,
)
from tests.unit.protocols.scep.server_setup import challenge, http_get, http_post

pytestmark = pytest.mark.e2e


def _edit(config: dict[str, Any], _data_dir: Path) -> None:
    for name in ("a", "b"):
        profile_like_default(config, name, est={"label": name})


@pytest.fixture(scope="module")
def gh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    server = start_configured(tmp_path_factory, "renewal-profiles", _edit)
    yield server
    server.stop()


def _ra(gh: GatehouseServer, profile: str) -> bytes:
    status, _, body = http_get(f"{gh.http_url}/scep/{profile}?operation=GetCACert")
    assert status == 200, body
    return ra_from_ca_ra_cert(body)[0]


def _post(gh: GatehouseServer, client: Client, message: bytes, profile: str) -> Reply:
    status, _, body = http_post(f"{gh.http_url}/scep/{profile}?operation=PKIOperation", message)
    assert status == 200, body
    reply = client.read(body)
    assert reply.transaction_id == client.transaction_id
    return reply


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cli_issued(gh: GatehouseServer, tmp: Path, cn: str,
                profile: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A certificate issued under ``profile`` by ``gatehouse certs issue`` (not SCEP)."""
    key = _key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    path = tmp / f"{cn}.csr"
    path.write_bytes(csr.public_bytes(Encoding.PEM))
    out = tmp / f"{cn}.pem"
    run_cli(["certs", "issue", "--profile", profile, "--csr", str(path), "--out", str(out)],
            gh.data_dir)
    return x509.load_pem_x509_certificates(out.read_bytes())[0], key


def _scep_enrolled(gh: GatehouseServer, cn: str,
                   profile: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key()
    client = Client(ra_der=_ra(gh, profile), key=key, signer=self_signed(key))
    reply = _post(gh, client, client.pkcs_req(
        csr_with_challenge(key, cn, challenge(gh.data_dir, profile))), profile)
    assert reply.status == "0", reply.fail_text
    return reply.certificates[0], key


def _signed_by(gh: GatehouseServer, cert: x509.Certificate, key: rsa.RSAPrivateKey,
               profile: str, *, renewal: bool) -> Reply:
    """A RenewalReq (or a PKCSReq without a challenge) for ``cert``'s CN, same key,
    signed with ``cert``, to ``/scep/<profile>``."""
    client = Client(ra_der=_ra(gh, profile), key=key, signer=cert)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    csr = csr_with_challenge(key, str(cn), None)
    return _post(gh, client, client.renewal_req(csr) if renewal else client.pkcs_req(csr),
                 profile)


def _profile_certificates(gh: GatehouseServer, profile: str) -> int:
    """How many certificates the inventory holds under ``profile`` (one line each)."""
    shown = run_cli(["certs", "list", "--profile", profile, "--limit", "1000"],
                    gh.data_dir).stdout
    return len([line for line in shown.splitlines()[1:] if line.strip()])


def _replaces(gh: GatehouseServer, cert: x509.Certificate) -> Any:
    shown = run_cli(["certs", "show", format(cert.serial_number, "x")], gh.data_dir).stdout
    return json.loads(shown.split("-----BEGIN", 1)[0])


def test_another_profiles_certificate_renews_nothing(gh: GatehouseServer,
                                                     tmp_path: Path) -> None:
    cert, key = _cli_issued(gh, tmp_path, "cross.example.test", "a")
    before = _profile_certificates(gh, "b")
    reply = _signed_by(gh, cert, key, "b", renewal=True)
    assert (reply.status, reply.fail_info) == ("2", "2"), reply.fail_text  # badRequest
    assert "issued under profile 'b'" in (reply.fail_text or ""), reply.fail_text
    assert reply.certificates == []
    # A PKCSReq signed with it is a first enrollment on b: b's challenge is required.
    reply = _signed_by(gh, cert, key, "b", renewal=False)
    assert reply.status == "2" and reply.certificates == [], reply.fail_text
    assert "challengePassword" in (reply.fail_text or ""), reply.fail_text
    assert _profile_certificates(gh, "b") == before
    # Positive control: on its own profile the same certificate renews.
    reply = _signed_by(gh, cert, key, "a", renewal=True)
    assert reply.status == "0", reply.fail_text
    shown = _replaces(gh, reply.certificates[0])
    assert shown["profile"] == "a" and shown["replaces"] == format(cert.serial_number, "x")


def test_a_profile_b_certificate_renews_on_b(gh: GatehouseServer) -> None:
    cert, key = _scep_enrolled(gh, "home.example.test", "b")
    reply = _signed_by(gh, cert, key, "b", renewal=True)
    assert reply.status == "0", reply.fail_text
    renewed = reply.certificates[0]
    shown = _replaces(gh, renewed)
    assert shown["profile"] == "b" and shown["replaces"] == format(cert.serial_number, "x")
    # certmonger's form: a PKCSReq signed with the current certificate, no challenge.
    reply = _signed_by(gh, renewed, key, "b", renewal=False)
    assert reply.status == "0", reply.fail_text
