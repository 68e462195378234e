"""protocols.cms against OpenSSL (`openssl pkcs7` / `openssl cms`) and asn1crypto.

Every structure the gateway emits is read by OpenSSL, every structure OpenSSL makes is
read by our verifier / decryptor, and what we refuse is shown beside what we accept.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from protocols import cms
from tests.support.est import TestCa, write_key
from tests.support.pki import PrivateKey, make_key

OID_PKI_RESPONSE = "1.3.6.1.5.5.7.12.3"  # a content type other than id-data (RFC 5272)
CONTENT = b"\x30\x06\x02\x01\x01\x02\x01\x02"


def openssl(*args: str, data: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@pytest.fixture(scope="module")
def ca() -> TestCa:
    return TestCa.create("CMS Test CA")


def _issued(ca: TestCa, kind: str) -> tuple[x509.Certificate, PrivateKey]:
    return ca.issue(f"{kind}.cms.example.test", key=make_key(kind))


def _files(tmp_path: Path, name: str, cert: x509.Certificate, key: PrivateKey
           ) -> tuple[Path, Path]:
    cert_path = tmp_path / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    return cert_path, write_key(tmp_path, name, key)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


# -- certs-only ----------------------------------------------------------------------------


def test_certs_only_is_read_by_openssl_in_der_set_of_order(ca: TestCa) -> None:
    leaves = [_der(ca.issue(f"n{i}.example.test")[0]) for i in range(3)]
    given = [leaves[2], _der(ca.cert), leaves[0], leaves[1]]
    crl_free = cms.certs_only(given)
    printed = openssl("pkcs7", "-inform", "DER", "-print_certs", data=crl_free)
    on_wire = [_der(c) for c in x509.load_pem_x509_certificates(printed)]
    assert sorted(on_wire) == sorted(given)
    # DER sorts the SET OF (X.690 §11.6): the order given is not the order on the wire.
    assert on_wire == sorted(given)
    # asn1crypto round trip: parsing and re-encoding yields the same bytes.
    assert asn1_cms.ContentInfo.load(crl_free).dump(force=True) == crl_free


def test_certs_only_with_a_crl_is_read_by_openssl(ca: TestCa) -> None:
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
           .last_update(now).next_update(now + dt.timedelta(days=1))
           .sign(ca.key, hashes.SHA256()))
    der = cms.certs_only([_der(ca.cert)], [crl.public_bytes(Encoding.DER)])
    printed = openssl("pkcs7", "-inform", "DER", "-print_certs", "-text", data=der)
    assert b"Certificate Revocation List" in printed and b"CMS Test CA" in printed


# -- SignedData ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa-2048", "ec-p256"])
@pytest.mark.parametrize("content_type", ["data", OID_PKI_RESPONSE])
def test_our_signed_data_verifies_in_openssl(ca: TestCa, tmp_path: Path, kind: str,
                                             content_type: str) -> None:
    cert, key = _issued(ca, kind)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    der = cms.sign(CONTENT, signer_der=_der(cert), signer_key=key, digest="sha256",
                   attributes=(), certificates_der=[_der(ca.cert)], content_type=content_type)
    (tmp_path / "signed.der").write_bytes(der)
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    out = openssl("cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "signed.der"),
                  "-CAfile", str(tmp_path / "ca.pem"), "-purpose", "any", "-binary")
    assert out == CONTENT
    assert openssl("cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "signed.der"),
                   "-noverify", "-binary") == CONTENT
    # asn1crypto round trip, and our own verifier agrees.
    info = asn1_cms.ContentInfo.load(der)
    assert info.dump(force=True) == der
    verified = cms.verify_signed_data(info["content"], allowed_digests={"sha256"})
    assert verified.content == CONTENT and verified.signers[0].certificate == cert


@pytest.mark.parametrize("kind", ["rsa-2048", "ec-p256"])
def test_openssl_signed_data_verifies_with_our_verifier(ca: TestCa, tmp_path: Path,
                                                        kind: str) -> None:
    cert, key = _issued(ca, kind)
    cert_path, key_path = _files(tmp_path, "signer", cert, key)
    (tmp_path / "content.bin").write_bytes(CONTENT)
    der = openssl("cms", "-sign", "-nodetach", "-binary", "-md", "sha256", "-outform", "DER",
                  "-in", str(tmp_path / "content.bin"), "-signer", str(cert_path),
                  "-inkey", str(key_path))
    info = cms.load_content_info(der, "signed_data")
    verified = cms.verify_signed_data(info["content"], allowed_digests={"sha256"})
    assert verified.content == CONTENT
    assert verified.signers[0].certificate == cert
    # the same message, signed by a key named by key identifier, found among candidates
    der_ski = openssl("cms", "-sign", "-nodetach", "-binary", "-md", "sha256", "-keyid",
                      "-nocerts", "-outform", "DER", "-in", str(tmp_path / "content.bin"),
                      "-signer", str(cert_path), "-inkey", str(key_path))
    signed = cms.load_content_info(der_ski, "signed_data")["content"]
    with pytest.raises(cms.CmsBadSignature):  # nothing names the signer: refused
        cms.verify_signed_data(signed, allowed_digests={"sha256"})
    by_key = cms.verify_signed_data(signed, allowed_digests={"sha256"},
                                    candidate_keys=[cert.public_key()])
    assert by_key.signers[0].certificate is None and by_key.content == CONTENT


def _signed(ca: TestCa) -> tuple[bytes, x509.Certificate]:
    cert, key = _issued(ca, "ec-p256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cms.sign(CONTENT, signer_der=_der(cert), signer_key=key, digest="sha256",
                    attributes=()), cert


def test_a_tampered_signature_is_refused(ca: TestCa, tmp_path: Path) -> None:
    der, _cert = _signed(ca)
    info = asn1_cms.ContentInfo.load(der)
    good = cms.verify_signed_data(info["content"], allowed_digests={"sha256"})
    assert good.content == CONTENT  # positive control
    signature = bytes(info["content"]["signer_infos"][0]["signature"].native)
    flipped = bytearray(signature)
    flipped[-3] ^= 0x01
    tampered = der.replace(signature, bytes(flipped))
    assert tampered != der
    with pytest.raises(cms.CmsBadSignature):
        cms.verify_signed_data(asn1_cms.ContentInfo.load(tampered)["content"],
                               allowed_digests={"sha256"})
    (tmp_path / "bad.der").write_bytes(tampered)
    refused = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-noverify",
                              "-in", str(tmp_path / "bad.der")], capture_output=True,
                             timeout=60, check=False)
    assert refused.returncode != 0  # OpenSSL agrees


def test_tampered_content_and_disallowed_digest_are_refused(ca: TestCa) -> None:
    der, _cert = _signed(ca)
    tampered = der.replace(CONTENT, CONTENT[:-1] + b"\x03")
    with pytest.raises(cms.CmsBadSignature, match="message digest"):
        cms.verify_signed_data(asn1_cms.ContentInfo.load(tampered)["content"],
                               allowed_digests={"sha256"})
    with pytest.raises(cms.CmsUnsupportedAlgorithm):
        cms.verify_signed_data(asn1_cms.ContentInfo.load(der)["content"],
                               allowed_digests={"sha512"})


def test_a_signer_is_matched_by_issuer_and_serial(ca: TestCa) -> None:
    """issuerAndSerialNumber names a carried certificate by issuer *and* serial: a
    certificate of another CA with the same serial is not the signer."""
    cert, _key = _issued(ca, "ec-p256")
    other = TestCa.create("Other CA")
    now = dt.datetime.now(dt.UTC)
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    impostor = (x509.CertificateBuilder().subject_name(cert.subject)
                .issuer_name(other.cert.subject).public_key(impostor_key.public_key())
                .serial_number(cert.serial_number).not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=1)).sign(other.key, hashes.SHA256()))
    der = cms.sign(CONTENT, signer_der=_der(impostor), signer_key=impostor_key,
                   digest="sha256", attributes=())
    info = asn1_cms.ContentInfo.load(der)
    assert cms.verify_signed_data(info["content"], allowed_digests={"sha256"}).signers
    sid = info["content"]["signer_infos"][0]["sid"].chosen
    sid["issuer"] = asn1_x509.Name.load(ca.cert.subject.public_bytes())  # names our CA
    relabelled = asn1_cms.ContentInfo.load(info.dump(force=True))
    with pytest.raises(cms.CmsBadSignature):
        cms.verify_signed_data(relabelled["content"], allowed_digests={"sha256"})


# -- EnvelopedData -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "options"), [
    ("rsa-2048", {}), ("rsa-2048", {"rsa_oaep": True}), ("ec-p256", {}),
    ("rsa-2048", {"cipher": "tripledes_3key"}),
])
def test_our_enveloped_data_decrypts_in_openssl(ca: TestCa, tmp_path: Path, kind: str,
                                                options: dict[str, object]) -> None:
    cert, key = _issued(ca, kind)
    cert_path, key_path = _files(tmp_path, "recipient", cert, key)
    der = cms.envelope(CONTENT, [_der(cert)], **options)  # type: ignore[arg-type]
    assert asn1_cms.ContentInfo.load(der).dump(force=True) == der
    (tmp_path / "env.der").write_bytes(der)
    out = openssl("cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "env.der"),
                  "-recip", str(cert_path), "-inkey", str(key_path), "-binary")
    assert out == CONTENT


def test_our_kek_enveloped_data_decrypts_in_openssl(tmp_path: Path) -> None:
    kek, key_id = bytes(range(32)), b"\x01\x02\x03"
    der = cms.envelope_for_kek(CONTENT, key_id=key_id, kek=kek)
    (tmp_path / "env.der").write_bytes(der)
    out = openssl("cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "env.der"),
                  "-secretkey", kek.hex(), "-secretkeyid", key_id.hex(), "-binary")
    assert out == CONTENT


@pytest.mark.parametrize(("openssl_cipher", "name"), [("-aes256", "aes256_cbc"),
                                                      ("-aes128", "aes128_cbc"),
                                                      ("-des3", "tripledes_3key")])
def test_openssl_enveloped_data_opens_with_our_decryptor(ca: TestCa, tmp_path: Path,
                                                         openssl_cipher: str, name: str) -> None:
    cert, key = _issued(ca, "rsa-2048")
    assert isinstance(key, rsa.RSAPrivateKey)
    cert_path, _ = _files(tmp_path, "recipient", cert, key)
    (tmp_path / "content.bin").write_bytes(CONTENT)
    der = openssl("cms", "-encrypt", "-binary", openssl_cipher, "-outform", "DER",
                  "-in", str(tmp_path / "content.bin"), str(cert_path))
    enveloped = cms.load_content_info(der, "enveloped_data")["content"]
    opened = cms.open_envelope(enveloped, certificate_der=_der(cert), key=key,
                               allowed_ciphers=cms.CIPHERS)
    assert opened.content == CONTENT and opened.cipher == name
    stranger, stranger_key = _issued(ca, "rsa-2048")
    assert isinstance(stranger_key, rsa.RSAPrivateKey)
    with pytest.raises(cms.CmsNotForUs):  # not addressed to this certificate
        cms.open_envelope(enveloped, certificate_der=_der(stranger), key=stranger_key,
                          allowed_ciphers=cms.CIPHERS)
