"""pkiMessage codec: header, signature, envelope, CertRep (protocols.scep.message/certrep)."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from gateway.ra import RaIdentity
from protocols import cms as cmslib
from protocols.scep import certrep, message
from protocols.scep.errors import ScepFailure, Unreadable
from protocols.scep.vocabulary import (
    LEGACY_CIPHERS,
    LEGACY_DIGESTS,
    MODERN_CIPHERS,
    MODERN_DIGESTS,
    FailInfo,
    MessageType,
)
from tests.unit.protocols.scep.client import Client, csr_with_challenge, self_signed

ALL_DIGESTS = MODERN_DIGESTS | LEGACY_DIGESTS
ALL_CIPHERS = MODERN_CIPHERS | LEGACY_CIPHERS


def _client(ra: RaIdentity, **kwargs: object) -> Client:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Client(ra_der=ra.der, key=key, signer=self_signed(key), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("digest", sorted(ALL_DIGESTS))
@pytest.mark.parametrize("cipher", sorted(ALL_CIPHERS))
def test_round_trip_every_algorithm(ra: RaIdentity, digest: str, cipher: str) -> None:
    client = _client(ra, digest=digest, cipher=cipher)
    csr = csr_with_challenge(client.key, "dev", "secret")
    header, signed = message.read_header(client.pkcs_req(csr))
    assert header.message_type is MessageType.PKCS_REQ
    assert header.transaction_id == client.transaction_id
    assert header.sender_nonce == client.last_nonce
    pki = message.verify(header, signed, allowed_digests=ALL_DIGESTS)
    assert pki.digest == digest and pki.signer_der == client.signer_der
    opened = message.open_envelope(pki, ra_der=ra.der, ra_key=ra.key, allowed_ciphers=ALL_CIPHERS)
    assert opened.content == csr and opened.cipher == cipher


def test_ec_signed_requests_verify(ra: RaIdentity) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    client = Client(ra_der=ra.der, key=key, signer=self_signed(key))
    header, signed = message.read_header(client.pkcs_req(csr_with_challenge(key, "e", "s")))
    assert message.verify(header, signed, allowed_digests=MODERN_DIGESTS).signer.subject


def test_disallowed_algorithms_are_bad_alg(ra: RaIdentity) -> None:
    client = _client(ra, digest="sha1", cipher="des")
    header, signed = message.read_header(client.pkcs_req(csr_with_challenge(client.key, "d", "s")))
    with pytest.raises(ScepFailure) as raised:
        message.verify(header, signed, allowed_digests=MODERN_DIGESTS)
    assert raised.value.fail_info is FailInfo.BAD_ALG
    pki = message.verify(header, signed, allowed_digests=ALL_DIGESTS)
    with pytest.raises(ScepFailure) as raised:
        message.open_envelope(pki, ra_der=ra.der, ra_key=ra.key, allowed_ciphers=MODERN_CIPHERS)
    assert raised.value.fail_info is FailInfo.BAD_ALG


def test_tampered_content_is_bad_message_check(ra: RaIdentity) -> None:
    client = _client(ra)
    data = bytearray(client.pkcs_req(csr_with_challenge(client.key, "d", "s")))
    data[200] ^= 0x01  # inside the enveloped content: messageDigest no longer matches
    header, signed = message.read_header(bytes(data))
    with pytest.raises(ScepFailure) as raised:
        message.verify(header, signed, allowed_digests=ALL_DIGESTS)
    assert raised.value.fail_info is FailInfo.BAD_MESSAGE_CHECK


@pytest.mark.parametrize("body", [b"", b"junk", b"\x30\x80", b"\x30\x03\x06\x01\x00"])
def test_unreadable_messages(body: bytes) -> None:
    with pytest.raises(Unreadable):
        message.read_header(body)


def test_certrep_carries_the_rfc_8894_attributes(ra: RaIdentity) -> None:
    client = _client(ra)
    header, _ = message.read_header(client.pkcs_req(csr_with_challenge(client.key, "d", "s")))
    algorithms = certrep.ReplyAlgorithms()
    failure = client.read(certrep.failure(header, ra, algorithms, FailInfo.BAD_TIME, "late"))
    assert (failure.status, failure.fail_info, failure.fail_text) == ("2", "3", "late")
    assert failure.recipient_nonce == client.last_nonce
    assert failure.transaction_id == client.transaction_id
    assert failure.signer is not None and failure.signer.serial_number == ra.certificate.serial_number
    pending = client.read(certrep.pending(header, ra, algorithms))
    assert (pending.status, pending.fail_info) == ("3", None)
    success = client.read(certrep.success(header, ra, algorithms, recipient_der=client.signer_der,
                                          certificates_der=(ra.der,)))
    assert success.status == "0" and success.certificates[0] == ra.certificate
    assert success.cipher == "aes256_cbc"


def test_success_to_an_ec_signer_uses_key_agreement_openssl_decrypts(
        ra: RaIdentity, tmp_path: Path) -> None:
    """RFC 5753 ECDH for EC devices; checked with openssl cms, an independent decoder."""
    key = ec.generate_private_key(ec.SECP256R1())
    client = Client(ra_der=ra.der, key=key, signer=self_signed(key))
    header, _ = message.read_header(client.pkcs_req(csr_with_challenge(key, "e", "s")))
    reply = certrep.success(header, ra, certrep.ReplyAlgorithms(), recipient_der=client.signer_der,
                            certificates_der=(ra.der,))
    signed = cmslib.load_content_info(reply, "signed_data")["content"]
    enveloped = cmslib.encapsulated_content(signed)
    (tmp_path / "env.der").write_bytes(enveloped)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    (tmp_path / "cert.pem").write_bytes(client.signer.public_bytes(Encoding.PEM))
    result = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER", "-in",
                             str(tmp_path / "env.der"), "-recip", str(tmp_path / "cert.pem"),
                             "-inkey", str(tmp_path / "key.pem"), "-binary"],
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    inner = cmslib.load_content_info(result.stdout, "signed_data")["content"]
    assert inner["certificates"][0].chosen.dump() == ra.der


def test_success_to_an_ed25519_signer_cannot_be_encrypted(ra: RaIdentity) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(hours=1)).sign(key, None))
    rsa_client = _client(ra)
    header, _ = message.read_header(rsa_client.pkcs_req(csr_with_challenge(
        rsa_client.key, "e", "s")))
    with pytest.raises(cmslib.CmsUnsupportedAlgorithm):
        certrep.success(header, ra, certrep.ReplyAlgorithms(),
                        recipient_der=cert.public_bytes(Encoding.DER), certificates_der=())
