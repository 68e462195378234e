"""Server key generation helpers and the EnvelopedData for encrypted keys."""

from __future__ import annotations

import pytest
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)
from cryptography.x509.name import _ASN1Type

from gateway.errors import ErrorKind, GatewayError
from protocols.est import envelope, serverkeygen
from tests.support.est import TestCa
from tests.support.pki import csr_der, make_csr, make_key


@pytest.mark.parametrize(("kind", "cls"), [("ec-p256", ec.EllipticCurvePrivateKey),
                                           ("ed25519", ed25519.Ed25519PrivateKey),
                                           ("rsa-2048", rsa.RSAPrivateKey)])
def test_generate_key_and_rebuild_csr(kind: str, cls: type) -> None:
    csr, _ = make_csr("skg.example.test", dns=["skg.example.test"], ips=["192.0.2.1"])
    key = serverkeygen.generate_key(kind)
    assert isinstance(key, cls)
    rebuilt = serverkeygen.rebuild_csr(csr, key)  # type: ignore[arg-type]
    assert rebuilt.is_signature_valid
    assert rebuilt.subject == csr.subject
    assert [e.value for e in rebuilt.extensions] == [e.value for e in csr.extensions]
    assert rebuilt.public_key() == key.public_key()


def test_requested_encryption_reads_the_key_identifier() -> None:
    key = make_key()
    base = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")]))
    plain = base.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    assert serverkeygen.requested_encryption(csr_der(plain)) is None
    asked = base.add_attribute(x509.ObjectIdentifier(serverkeygen.OID_ASYMM_DECRYPT_KEY_ID),
                               b"\x01\x02\x03", _tag=_ASN1Type.OctetString).sign(
        key, hashes.SHA256())  # type: ignore[arg-type]
    assert serverkeygen.requested_encryption(csr_der(asked)) == (
        serverkeygen.OID_ASYMM_DECRYPT_KEY_ID, b"\x01\x02\x03")


def test_envelope_decrypts_with_the_recipient_rsa_key() -> None:
    ca = TestCa.create("Env CA")
    recipient_key = rsa.generate_private_key(65537, 2048)
    cert, _ = ca.issue("recipient.example.test", key=recipient_key)
    secret = make_key().private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    payload = envelope.key_package(secret)
    info = cms.ContentInfo.load(envelope.envelope_for(cert, payload, envelope.OID_KEY_PACKAGE))
    enveloped = info["content"]
    ktri = enveloped["recipient_infos"][0].chosen
    assert ktri["rid"].chosen.native == cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    content_key = recipient_key.decrypt(ktri["encrypted_key"].native,
                                        OAEP(MGF1(hashes.SHA256()), hashes.SHA256(), None))
    eci = enveloped["encrypted_content_info"]
    assert eci["content_type"].dotted == envelope.OID_KEY_PACKAGE
    iv = eci["content_encryption_algorithm"]["parameters"].native
    decryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(eci["encrypted_content"].native) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    plaintext = unpadder.update(padded) + unpadder.finalize()
    assert plaintext == payload
    package = core.Sequence.load(plaintext)
    assert load_der_private_key(package.contents, None) is not None
    assert package.contents == secret


def test_envelope_default_content_type_is_signed_data() -> None:
    cert, _ = TestCa.create("Env CA 2").issue("r.example.test",
                                              key=rsa.generate_private_key(65537, 2048))
    info = cms.ContentInfo.load(envelope.envelope_for(cert, b"\x30\x00"))
    assert info["content"]["encrypted_content_info"]["content_type"].native == "signed_data"


def test_envelope_refuses_non_rsa_recipients() -> None:
    cert, _ = TestCa.create("EC CA").issue("ec.example.test")
    with pytest.raises(GatewayError) as caught:
        envelope.envelope_for(cert, b"\x30\x00")
    assert caught.value.kind is ErrorKind.UNSUPPORTED


def test_kek_envelope_unwraps_with_the_pre_shared_key() -> None:
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

    kek = bytes(range(16))
    info = cms.ContentInfo.load(envelope.envelope_for_kek(b"\x01\x02", kek, b"\x30\x00"))
    kekri = info["content"]["recipient_infos"][0]
    assert kekri.name == "kekri"
    assert kekri.chosen["kekid"]["key_identifier"].native == b"\x01\x02"
    assert kekri.chosen["key_encryption_algorithm"]["algorithm"].native == "aes128_wrap"
    content_key = aes_key_unwrap(kek, kekri.chosen["encrypted_key"].native)
    eci = info["content"]["encrypted_content_info"]
    iv = eci["content_encryption_algorithm"]["parameters"].native
    decryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(eci["encrypted_content"].native) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    assert unpadder.update(padded) + unpadder.finalize() == b"\x30\x00"
    with pytest.raises(GatewayError):
        envelope.envelope_for_kek(b"\x01", b"short", b"\x30\x00")
