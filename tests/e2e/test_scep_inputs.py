"""SCEP bad input and per-profile options against gatehouse as a process.

Every bad message gets a CertRep FAILURE with the right failInfo when it can be read far
enough to answer (transactionID and senderNonce), else HTTP 400 — never a 500.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from asn1crypto import cms, core
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from protocols import cms as cmslib
from protocols.scep.vocabulary import (
    OID_MESSAGE_TYPE,
    OID_SENDER_NONCE,
    OID_TRANSACTION_ID,
    MessageType,
)
from tests.support.server import GatehouseServer, run_cli
from tests.unit.protocols.scep.client import Client, csr_with_challenge, self_signed
from tests.unit.protocols.scep.server_setup import (
    STATIC_CHALLENGE,
    WEBHOOK_ALLOW,
    challenge,
    http_get,
    http_post,
    start_scep_server,
    webhook_server,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatehouseServer, list[dict]]]:
    with webhook_server() as (port, seen):
        server = start_scep_server(tmp_path_factory.mktemp("scep-in") / "data",
                                   webhook_port=port)
        yield server, seen
        server.stop()


def _ra(server: GatehouseServer, path: str = "/scep") -> bytes:
    from tests.unit.protocols.scep.client import ra_from_ca_ra_cert

    return ra_from_ca_ra_cert(http_get(f"{server.http_url}{path}?operation=GetCACert")[2])[0]


def _client(server: GatehouseServer, path: str = "/scep", **kwargs: object) -> Client:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Client(ra_der=_ra(server, path), key=key, signer=self_signed(key), **kwargs)  # type: ignore[arg-type]


def _send(server: GatehouseServer, body: bytes, path: str = "/scep") -> tuple[int, bytes]:
    status, _, answer = http_post(f"{server.http_url}{path}?operation=PKIOperation", body)
    assert status != 500
    return status, answer


@pytest.mark.parametrize("body", [b"garbage", b"\x30\x03\x02\x01", b"\x00" * 100,
                                  b"MIIB" * 10])
def test_unreadable_bodies_get_http_400(gh: tuple[GatehouseServer, list[dict]], body: bytes) -> None:
    status, answer = _send(gh[0], body)
    assert status == 400 and b"pkiMessage" in answer


def test_truncated_message_gets_http_400(gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    client = _client(server)
    message = client.pkcs_req(csr_with_challenge(client.key, "t", "x"))
    for cut in (10, len(message) // 2, len(message) - 1):
        status, _ = _send(server, message[:cut])
        assert status == 400


def test_oversized_messages(gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    status, answer = _send(server, b"\x30" + b"\x00" * (100 * 1024))
    assert status == 400 and b"larger than" in answer
    status, _ = _send(server, b"\x30" + b"\x00" * (300 * 1024))
    assert status == 413  # the server's body limit, before SCEP sees it


def test_wrong_recipient_is_bad_message_check(gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    client = _client(server)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = self_signed(other_key).public_bytes(Encoding.DER)
    message = client.message(MessageType.PKCS_REQ, csr_with_challenge(client.key, "w", "x"),
                             recipients=(other,))
    reply = client.read(_send(server, message)[1])
    assert (reply.status, reply.fail_info) == ("2", "1")
    assert "not encrypted to" in (reply.fail_text or "")


def test_bad_signature_is_bad_message_check(gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    client = _client(server)
    message = bytearray(client.pkcs_req(csr_with_challenge(client.key, "s", "x")))
    info = cms.ContentInfo.load(bytes(message))
    signature = info["content"]["signer_infos"][0]["signature"].native
    at = bytes(message).index(signature)
    message[at + 10] ^= 0xFF
    reply = client.read(_send(server, bytes(message))[1])
    assert (reply.status, reply.fail_info) == ("2", "1")


def test_unknown_cipher_is_bad_alg(gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    client = _client(server)
    envelope = cmslib.envelope(csr_with_challenge(client.key, "c", "x"), [client.ra_der],
                               cipher="aes128_cbc")
    aes128_cbc = bytes.fromhex("0609608648016503040102")
    aes128_ofb = bytes.fromhex("0609608648016503040103")  # same length: structure stays valid
    patched = envelope.replace(aes128_cbc, aes128_ofb, 1)
    assert patched != envelope
    reply = client.read(_send(server, _resign(client, patched))[1])
    assert (reply.status, reply.fail_info) == ("2", "0")


def test_strict_profile_refuses_des_and_sha1_with_bad_alg(
        gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    for digest, cipher in (("sha256", "des"), ("sha1", "aes128_cbc")):
        client = _client(server, "/scep/strict", digest=digest, cipher=cipher)
        reply = client.read(_send(server, client.pkcs_req(
            csr_with_challenge(client.key, "s", challenge(server.data_dir, "strict"))),
            "/scep/strict")[1])
        assert (reply.status, reply.fail_info) == ("2", "0")


def test_legacy_requests_refused_by_default_accepted_on_switch_and_answered_with_aes(
        gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    client = _client(server, digest="sha1", cipher="des")
    reply = client.read(_send(server, client.pkcs_req(
        csr_with_challenge(client.key, "old-device", challenge(server.data_dir))))[1])
    assert (reply.status, reply.fail_info) == ("2", "0")  # badAlg: issue #10 rule 12
    client = _client(server, "/scep/tolerant", digest="sha1", cipher="des")
    reply = client.read(_send(server, client.pkcs_req(
        csr_with_challenge(client.key, "old-device", challenge(server.data_dir, "tolerant"))),
        "/scep/tolerant")[1])
    assert reply.status == "0"
    assert (reply.digest, reply.cipher) == ("sha256", "aes256_cbc")
    legacy = _client(server, "/scep/legacy", digest="sha1", cipher="tripledes_3key")
    reply = legacy.read(_send(server, legacy.pkcs_req(
        csr_with_challenge(legacy.key, "old-device", challenge(server.data_dir, "legacy"))),
        "/scep/legacy")[1])
    assert (reply.digest, reply.cipher) == ("sha1", "tripledes_3key")


def test_signing_time_far_off_is_bad_time(gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    client = _client(server, "/scep/strict")
    stale = cms.CMSAttribute({"type": "signing_time", "values": [
        cms.Time({"utc_time": core.UTCTime(dt.datetime.now(dt.UTC) - dt.timedelta(days=2))})]})
    message = client.message(MessageType.PKCS_REQ, csr_with_challenge(
        client.key, "t", challenge(server.data_dir, "strict")), extra=(stale,))
    reply = client.read(_send(server, message, "/scep/strict")[1])
    assert (reply.status, reply.fail_info) == ("2", "3")


def test_static_challenge_profile(gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    for secret, status in ((STATIC_CHALLENGE, "0"), ("wrong", "2"), (STATIC_CHALLENGE, "0")):
        client = _client(server, "/scep/static")
        reply = client.read(_send(server, client.pkcs_req(
            csr_with_challenge(client.key, "static-dev", secret)), "/scep/static")[1])
        assert reply.status == status


def test_webhook_challenge_profile(gh: tuple[GatehouseServer, list[dict]]) -> None:
    server, seen = gh
    client = _client(server, "/scep/hook")
    reply = client.read(_send(server, client.pkcs_req(
        csr_with_challenge(client.key, "hooked", WEBHOOK_ALLOW, dns=("hooked.example",))),
        "/scep/hook")[1])
    assert reply.status == "0", reply.fail_text
    assert seen[-1]["subject"] == "CN=hooked" and seen[-1]["sans"] == ["dns:hooked.example"]
    assert seen[-1]["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    client = _client(server, "/scep/hook")
    reply = client.read(_send(server, client.pkcs_req(
        csr_with_challenge(client.key, "hooked", "not-allowed")), "/scep/hook")[1])
    assert (reply.status, reply.fail_info) == ("2", "2")
    assert "not on the list" in (reply.fail_text or "")


def test_get_next_ca_cert_after_a_rollover(gh: tuple[GatehouseServer, list[dict]]) -> None:
    server = gh[0]
    run_cli(["ca", "rollover", "--activate-in", "7d"], server.data_dir)
    server.stop()
    server.start()
    status, ctype, body = http_get(f"{server.http_url}/scep?operation=GetNextCACert")
    assert status == 200 and ctype == "application/x-x509-next-ca-cert"
    signed = cmslib.load_content_info(body, "signed_data")["content"]
    result = cmslib.verify_signed_data(signed, allowed_digests={"sha256"})
    signer = result.signers[0].certificate
    assert signer is not None and "SCEP RA" in signer.subject.rfc4514_string()
    inner = cmslib.load_content_info(result.content, "signed_data")["content"]
    subjects = [c.chosen.subject.native["common_name"] for c in inner["certificates"]]
    assert "Gatehouse Issuing CA 2" in subjects


def _resign(client: Client, envelope: bytes) -> bytes:
    client.last_nonce = b"n" * 16
    attributes = [
        cmslib.attribute(OID_TRANSACTION_ID, core.PrintableString(client.transaction_id)),
        cmslib.attribute(OID_MESSAGE_TYPE, core.PrintableString("19")),
        cmslib.attribute(OID_SENDER_NONCE, core.OctetString(client.last_nonce)),
    ]
    return cmslib.sign(envelope, signer_der=client.signer_der, signer_key=client.key,
                       digest="sha256", attributes=attributes)
