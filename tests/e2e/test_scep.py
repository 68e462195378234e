"""SCEP (RFC 8894) against gatehouse as a process: CA info, enrollment, polling, renewal."""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from protocols.scep.vocabulary import MessageType
from tests.support.server import GatehouseServer, run_cli
from tests.unit.protocols.scep.client import (
    Client,
    Reply,
    csr_with_challenge,
    ra_from_ca_ra_cert,
    self_signed,
)
from tests.unit.protocols.scep.server_setup import (
    challenge,
    http_get,
    http_post,
    start_scep_server,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    server = start_scep_server(tmp_path_factory.mktemp("scep") / "data")
    yield server
    server.stop()


def _ra(gh: GatehouseServer, path: str = "/scep") -> bytes:
    status, ctype, body = http_get(f"{gh.http_url}{path}?operation=GetCACert")
    assert status == 200 and ctype == "application/x-x509-ca-ra-cert"
    return ra_from_ca_ra_cert(body)[0]


def _client(gh: GatehouseServer, path: str = "/scep", **kwargs: object) -> Client:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Client(ra_der=_ra(gh, path), key=key, signer=self_signed(key), **kwargs)  # type: ignore[arg-type]


def _post(gh: GatehouseServer, client: Client, message: bytes, path: str = "/scep") -> Reply:
    status, ctype, body = http_post(f"{gh.http_url}{path}?operation=PKIOperation", message)
    assert status == 200, body
    assert ctype == "application/x-pki-message"
    reply = client.read(body)
    assert reply.transaction_id == client.transaction_id
    assert reply.recipient_nonce == client.last_nonce  # RFC 8894 §3.2.1.5
    assert len(reply.sender_nonce) == 16 and reply.sender_nonce != client.last_nonce
    return reply


def test_get_ca_caps_lists_modern_algorithms_on_both_listeners(gh: GatehouseServer) -> None:
    for base in (gh.http_url, gh.https_url):
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=str(gh.root_pem))
        with urllib.request.urlopen(f"{base}/scep?operation=GetCACaps", timeout=30,
                                    context=context if base.startswith("https") else None) as r:
            caps = r.read().decode().split()
        assert {"POSTPKIOperation", "SHA-256", "SHA-512", "AES", "SCEPStandard", "Renewal",
                "GetNextCACert"} <= set(caps)
        assert "DES3" not in caps and "SHA-1" not in caps
    _, _, legacy = http_get(f"{gh.http_url}/scep/legacy?operation=GetCACaps")
    assert {"SHA-1", "DES3"} <= set(legacy.decode().split())


def test_get_ca_cert_sends_ra_and_chain_or_only_the_issuer(gh: GatehouseServer) -> None:
    _, _, body = http_get(f"{gh.http_url}/scep?operation=GetCACert")
    ra, certs = ra_from_ca_ra_cert(body)
    subjects = sorted(c.subject.rfc4514_string() for c in certs)
    assert any("SCEP RA" in s for s in subjects) and any("Root" in s for s in subjects)
    assert len(certs) == 3
    ra_cert = x509.load_der_x509_certificate(ra)
    assert ra_cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    _, _, intune = http_get(f"{gh.http_url}/scep/intune?operation=GetCACert")
    _, intune_certs = ra_from_ca_ra_cert(intune)
    assert len(intune_certs) == 2
    assert not any("Root" in c.subject.rfc4514_string() for c in intune_certs)


def test_enroll_with_a_one_time_challenge_then_reuse_fails(gh: GatehouseServer) -> None:
    secret = challenge(gh.data_dir)
    client = _client(gh)
    reply = _post(gh, client, client.pkcs_req(csr_with_challenge(client.key, "dev1", secret)))
    assert reply.status == "0", reply.fail_text
    assert reply.certificates[0].subject.rfc4514_string() == "CN=dev1"
    assert reply.cipher == "aes128_cbc" and reply.digest == "sha256"  # answered in kind
    # The same message again is the same transaction: the same certificate, no new use.
    again = _post(gh, client, client.pkcs_req(csr_with_challenge(client.key, "dev1", secret)))
    assert again.certificates[0].serial_number == reply.certificates[0].serial_number
    other = _client(gh)
    reused = _post(gh, other, other.pkcs_req(csr_with_challenge(other.key, "dev2", secret)))
    assert (reused.status, reused.fail_info) == ("2", "2")
    assert "already used" in (reused.fail_text or "")


def test_expired_and_subject_bound_challenges(gh: GatehouseServer) -> None:
    expired = challenge(gh.data_dir, "default", "--ttl", "1s")
    bound = challenge(gh.data_dir, "default", "--subject-pattern", r"kiosk-\d+")
    time.sleep(1.5)
    client = _client(gh)
    reply = _post(gh, client, client.pkcs_req(csr_with_challenge(client.key, "x", expired)))
    assert (reply.status, reply.fail_info) == ("2", "2") and "expired" in (reply.fail_text or "")
    client = _client(gh)
    reply = _post(gh, client, client.pkcs_req(csr_with_challenge(client.key, "laptop", bound)))
    assert (reply.status, reply.fail_info) == ("2", "2")
    client = _client(gh)
    reply = _post(gh, client, client.pkcs_req(csr_with_challenge(client.key, "kiosk-7", bound)))
    assert reply.status == "0"
    client = _client(gh)
    reply = _post(gh, client, client.pkcs_req(csr_with_challenge(client.key, "k", "nope")))
    assert (reply.status, reply.fail_info) == ("2", "2")
    client = _client(gh)
    reply = _post(gh, client, client.pkcs_req(csr_with_challenge(client.key, "k", None)))
    assert (reply.status, reply.fail_info) == ("2", "2")


def test_ec_device_enrolls_and_gets_an_ecdh_encrypted_reply(gh: GatehouseServer) -> None:
    """An EC key signs the pkiMessage; the reply uses ECDH key agreement (RFC 5753)."""
    key = ec.generate_private_key(ec.SECP256R1())
    client = Client(ra_der=_ra(gh), key=key, signer=self_signed(key))
    reply = _post(gh, client, client.pkcs_req(
        csr_with_challenge(key, "ec-device", challenge(gh.data_dir))))
    assert reply.status == "0", reply.fail_text
    assert reply.certificates[0].public_key() == key.public_key()


@pytest.mark.parametrize("path", ["/cgi-bin/pkiclient.exe", "/scep/default",
                                  "/scep/default/cgi-bin/pkiclient.exe"])
def test_pki_operation_by_get_with_raw_plus_signs(gh: GatehouseServer, path: str) -> None:
    """macOS/iOS and Cisco IOS send PKIOperation by GET; Cisco leaves '+' unescaped."""
    client = _client(gh, path)
    message = client.pkcs_req(csr_with_challenge(client.key, "router1", challenge(gh.data_dir)))
    encoded = base64.b64encode(message).decode()
    raw = encoded.replace("/", "%2F").replace("=", "%3D")  # '+' left raw, like IOS
    status, ctype, body = http_get(f"{gh.http_url}{path}?operation=PKIOperation&message={raw}")
    assert status == 200 and ctype == "application/x-pki-message"
    reply = client.read(body)
    assert reply.status == "0" and reply.recipient_nonce == client.last_nonce
    quoted = urllib.parse.quote(encoded, safe="")
    status, _, body = http_get(f"{gh.http_url}{path}?operation=PKIOperation&message={quoted}")
    assert client.read(body).status == "0"


def test_intune_sid_uri_san_reaches_the_certificate(gh: GatehouseServer) -> None:
    sid = "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1004336348-1177238915-682003330-512"
    client = _client(gh, "/scep/intune")
    csr = csr_with_challenge(client.key, "intune-device", challenge(gh.data_dir, "intune"),
                             uris=(sid,))
    reply = _post(gh, client, client.pkcs_req(csr), "/scep/intune")
    assert reply.status == "0", reply.fail_text
    sans = reply.certificates[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert sid in sans.get_values_for_type(x509.UniformResourceIdentifier)


def test_manual_approval_pending_then_cert_poll_success(gh: GatehouseServer) -> None:
    client = _client(gh, "/scep/manual")
    csr = csr_with_challenge(client.key, "held-device", None)
    reply = _post(gh, client, client.pkcs_req(csr), "/scep/manual")
    assert reply.status == "3"
    issuer = x509.load_der_x509_certificate(client.ra_der).issuer
    subject = x509.Name.from_rfc4514_string("CN=held-device")
    poll = _post(gh, client, client.cert_poll(issuer, subject), "/scep/manual")
    assert poll.status == "3"
    held = run_cli(["requests", "list", "--state", "held"], gh.data_dir).stdout
    request_id = next(line.split()[0] for line in held.splitlines() if "held-device" in line)
    run_cli(["requests", "approve", request_id], gh.data_dir)
    poll = _post(gh, client, client.cert_poll(issuer, subject), "/scep/manual")
    assert poll.status == "0" and poll.certificates[0].subject == subject


def test_manual_approval_denied_then_cert_poll_failure(gh: GatehouseServer) -> None:
    client = _client(gh, "/scep/manual")
    reply = _post(gh, client, client.pkcs_req(csr_with_challenge(client.key, "deny-me", None)),
                  "/scep/manual")
    assert reply.status == "3"
    held = run_cli(["requests", "list", "--state", "held"], gh.data_dir).stdout
    request_id = next(line.split()[0] for line in held.splitlines() if "deny-me" in line)
    run_cli(["requests", "deny", request_id, "--reason", "unknown device"], gh.data_dir)
    issuer = x509.load_der_x509_certificate(client.ra_der).issuer
    poll = _post(gh, client, client.cert_poll(issuer, x509.Name.from_rfc4514_string(
        "CN=deny-me")), "/scep/manual")
    assert (poll.status, poll.fail_info) == ("2", "2")


def test_cert_poll_for_an_unknown_transaction_is_bad_cert_id(gh: GatehouseServer) -> None:
    client = _client(gh)
    issuer = x509.load_der_x509_certificate(client.ra_der).issuer
    reply = _post(gh, client, client.cert_poll(issuer, x509.Name.from_rfc4514_string("CN=x")))
    assert (reply.status, reply.fail_info) == ("2", "4")


def _enrolled(gh: GatehouseServer, cn: str, path: str = "/scep",
              profile: str = "default") -> tuple[Client, x509.Certificate]:
    client = _client(gh, path)
    reply = _post(gh, client, client.pkcs_req(
        csr_with_challenge(client.key, cn, challenge(gh.data_dir, profile))), path)
    assert reply.status == "0", reply.fail_text
    return client, reply.certificates[0]


def test_renewal_signed_with_the_current_certificate(gh: GatehouseServer) -> None:
    client, cert = _enrolled(gh, "renew-me")
    renewing = Client(ra_der=client.ra_der, key=client.key, signer=cert,
                      transaction_id=client.transaction_id)  # same key: same transactionID
    reply = _post(gh, renewing, renewing.renewal_req(
        csr_with_challenge(client.key, "renew-me", None)))
    assert reply.status == "0", reply.fail_text
    new = reply.certificates[0]
    assert new.serial_number != cert.serial_number
    shown = run_cli(["certs", "show", format(new.serial_number, "x")], gh.data_dir).stdout
    assert f'"replaces": "{format(cert.serial_number, "x")}"' in shown
    # Rekey: a new key, signed with the current certificate.
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rekey = Client(ra_der=client.ra_der, key=client.key, signer=new)
    reply = _post(gh, rekey, rekey.renewal_req(csr_with_challenge(new_key, "renew-me", None)))
    assert reply.status == "0" and reply.certificates[0].public_key() == new_key.public_key()


def test_renewal_refused_for_revoked_or_unknown_certificates(gh: GatehouseServer) -> None:
    client, cert = _enrolled(gh, "revoked-device")
    run_cli(["certs", "revoke", format(cert.serial_number, "x")], gh.data_dir)
    renewing = Client(ra_der=client.ra_der, key=client.key, signer=cert)
    reply = _post(gh, renewing, renewing.renewal_req(
        csr_with_challenge(client.key, "revoked-device", None)))
    assert (reply.status, reply.fail_info) == ("2", "2")
    assert "revoked" in (reply.fail_text or "")
    stranger = _client(gh)  # self-signed: not from our inventory
    reply = _post(gh, stranger, stranger.renewal_req(
        csr_with_challenge(stranger.key, "revoked-device", None)))
    assert (reply.status, reply.fail_info) == ("2", "2")


def test_get_cert_and_get_crl(gh: GatehouseServer) -> None:
    client, cert = _enrolled(gh, "lookup-device")
    reply = _post(gh, client, client.get_cert(cert.issuer, cert.serial_number))
    assert reply.status == "0" and reply.certificates[0] == cert
    reply = _post(gh, client, client.get_cert(cert.issuer, 12345))
    assert (reply.status, reply.fail_info) == ("2", "4")
    reply = _post(gh, client, client.get_cert(cert.issuer, cert.serial_number,
                                              MessageType.GET_CRL))
    assert reply.status == "0" and reply.crl_der
    crl = x509.load_der_x509_crl(reply.crl_der)
    assert crl.issuer == cert.issuer


def test_get_next_ca_cert_is_404_without_a_rollover(gh: GatehouseServer) -> None:
    status, _, _ = http_get(f"{gh.http_url}/scep?operation=GetNextCACert")
    assert status == 404


def test_unknown_profile_and_operation(gh: GatehouseServer) -> None:
    assert http_get(f"{gh.http_url}/scep/nope?operation=GetCACaps")[0] == 404
    assert http_get(f"{gh.http_url}/scep?operation=Bogus")[0] == 400
    assert http_get(f"{gh.http_url}/scep")[0] == 400


