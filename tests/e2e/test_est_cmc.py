"""EST /fullcmc (RFC 5272 Full PKI Requests) with an httpx client, and encrypted
server-generated keys decrypted by `openssl cms`."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asn1crypto import cms, core
from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from protocols.est import cmc
from tests.e2e.conftest import openssl
from tests.support.est import (
    PASSWORD,
    TestCa,
    curl,
    est_url,
    openssl_csr,
    pkcs7_to_pem,
    start_est_server,
)
from tests.support.pki import make_csr
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e


KEK_ID = "0a0b0c0d"
KEK = os.urandom(32).hex()


@pytest.fixture(scope="module")
def est(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    data_dir = tmp_path_factory.mktemp("est-cmc") / "gatehouse-data"
    server = start_est_server(data_dir, TestCa.create("Extra Device CA"), kek=(KEK_ID, KEK))
    yield server
    server.stop()


def _signed(content: bytes, key: ec.EllipticCurvePrivateKey,
            cert: x509.Certificate | None = None) -> bytes:
    """ContentInfo(SignedData(PKIData)) signed by ``key`` (RFC 5272 §3.2.1.2)."""
    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": [cmc.OID_PKI_DATA]},
        {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
    ])
    signature = key.sign(attrs.dump(), ec.ECDSA(hashes.SHA256()))
    if cert is None:
        sid = cms.SignerIdentifier(name="subject_key_identifier", value=x509.SubjectKeyIdentifier
                                   .from_public_key(key.public_key()).digest)
        certs = []
    else:
        parsed = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
        sid = cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": parsed.issuer, "serial_number": parsed.serial_number})
        certs = [parsed]
    signed = cms.SignedData({
        "version": "v3", "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": cmc.OID_PKI_DATA,
                               "content": core.ParsableOctetString(content)},
        "certificates": certs or None,
        "signer_infos": [{"version": "v3" if cert is None else "v1", "sid": sid,
                          "digest_algorithm": {"algorithm": "sha256"},
                          "signed_attrs": attrs,
                          "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                          "signature": signature}],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def _tcr(body_part_id: int, csr: x509.CertificateSigningRequest) -> cmc.TaggedRequest:
    request = asn1_csr.CertificationRequest.load(csr.public_bytes(Encoding.DER))
    return cmc.TaggedRequest(name="tcr", value={"body_part_id": body_part_id,
                                                "certification_request": request})


def _pki_data(controls: list[cmc.TaggedAttribute], requests: list[cmc.TaggedRequest]) -> bytes:
    return bytes(cmc.PKIData({"control_sequence": controls, "req_sequence": requests,
                              "cms_sequence": [], "other_msg_sequence": []}).dump())


def _post(server: GatehouseServer, message: bytes, tmp: Path,
          label: str | None = None) -> tuple[cmc.PKIResponse, Path]:
    verify = ssl.create_default_context(cafile=str(server.root_pem))
    response = httpx.post(est_url(server, "fullcmc", label), content=base64.encodebytes(message),
                          headers={"Content-Type": "application/pkcs7-mime; smime-type=CMC-request"},
                          auth=(("dev", PASSWORD)), verify=verify, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pkcs7-mime; smime-type=CMC-response"
    der = base64.b64decode(response.content)
    (tmp / "resp.der").write_bytes(der)
    # The response is signed by the gateway's TLS server certificate: openssl verifies it.
    openssl("cms", "-verify", "-inform", "DER", "-in", str(tmp / "resp.der"), "-CAfile",
            str(server.root_pem), "-purpose", "any", "-out", str(tmp / "content.der"))
    return cmc.PKIResponse.load((tmp / "content.der").read_bytes()), tmp / "resp.der"


def _statuses(response: cmc.PKIResponse) -> list[tuple[int, list[int], int | None]]:
    out = []
    for control in response["control_sequence"]:
        if control["attr_type"].dotted == cmc.OID_STATUS_INFO_V2:
            info = cmc.CMCStatusInfoV2.load(control["attr_values"][0].dump())
            other = info["other_info"]
            fail = other.chosen.native if isinstance(other, cmc.OtherStatusInfo) \
                and other.name == "fail_info" else None
            out.append((info["cmc_status"].native,
                        [b.chosen.native for b in info["body_list"]], fail))
    return out


def test_fullcmc_enroll_then_revoke_shows_in_crl_and_ocsp(est: GatehouseServer,
                                                          tmp_path: Path) -> None:
    csr, key = make_csr("cmc.example.test", dns=["cmc.example.test"])
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    tcr = _tcr(1, csr)
    nonce = b"0123456789abcdef"
    controls = [cmc.tagged_attribute(2, cmc.OID_TRANSACTION_ID, core.Integer(4711)),
                cmc.tagged_attribute(3, cmc.OID_SENDER_NONCE, core.OctetString(nonce))]
    response, resp_path = _post(est, _signed(_pki_data(controls, [tcr]), key), tmp_path)
    assert _statuses(response) == [(0, [1], None)]
    echoed = {c["attr_type"].dotted: c["attr_values"][0].dump() for c in
              response["control_sequence"]}
    assert core.OctetString.load(echoed[cmc.OID_RECIPIENT_NONCE]).native == nonce
    assert core.Integer.load(echoed[cmc.OID_TRANSACTION_ID]).native == 4711
    printed = openssl("pkcs7", "-inform", "DER", "-in", str(resp_path), "-print_certs")
    certs = x509.load_pem_x509_certificates(printed.encode())
    leaf = next(c for c in certs if c.subject.rfc4514_string() == "CN=cmc.example.test")
    assert leaf.public_key() == key.public_key()

    # Revoke it with the revokeRequest control, signed by the certificate's key.
    revoke = cmc.RevokeRequest({
        "issuer_name": asn1_x509.Certificate.load(leaf.public_bytes(Encoding.DER)).issuer,
        "serial_number": leaf.serial_number, "reason": 1})
    message = _signed(_pki_data([cmc.tagged_attribute(7, cmc.OID_REVOKE_REQUEST, revoke)], []),
                      key, leaf)
    response, _ = _post(est, message, tmp_path)
    assert _statuses(response) == [(0, [7], None)]
    # Revoking again: failed (already revoked).
    response, _ = _post(est, message, tmp_path)
    assert _statuses(response) == [(2, [7], int(cmc.CMCFailInfo.BAD_REQUEST))]

    serial = format(leaf.serial_number, "X")
    crl = subprocess.run(["curl", "-sS", f"{est.http_url}/crl/internal.crl"],
                         capture_output=True, check=True).stdout
    (tmp_path / "crl.der").write_bytes(crl)
    crl_text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout",
                       "-text")
    assert serial.zfill(len(serial) + len(serial) % 2) in crl_text.replace(":", "").upper()
    issuer = next(c for c in certs if c.subject == leaf.issuer)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    (tmp_path / "issuer.pem").write_bytes(issuer.public_bytes(Encoding.PEM))
    ocsp = openssl("ocsp", "-issuer", str(tmp_path / "issuer.pem"), "-cert",
                   str(tmp_path / "leaf.pem"), "-url", f"{est.http_url}/ocsp/internal",
                   "-CAfile", str(est.root_pem))
    assert "leaf.pem: revoked" in ocsp and "Reason: keyCompromise" in ocsp


def test_fullcmc_unsupported_control_and_bad_signature(est: GatehouseServer,
                                                       tmp_path: Path) -> None:
    csr, key = make_csr("cmc2.example.test")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    tcr = _tcr(1, csr)
    identification = cmc.tagged_attribute(5, "1.3.6.1.5.5.7.7.2", core.UTF8String("me"))
    response, _ = _post(est, _signed(_pki_data([identification], [tcr]), key), tmp_path)
    assert _statuses(response) == [(2, [5], int(cmc.CMCFailInfo.BAD_REQUEST))]
    # Signed by a key the message does not name: badMessageCheck.
    _other, other_key = make_csr("x.example.test")
    assert isinstance(other_key, ec.EllipticCurvePrivateKey)
    response, _ = _post(est, _signed(_pki_data([], [tcr]), other_key), tmp_path)
    assert _statuses(response) == [(2, [], int(cmc.CMCFailInfo.BAD_MESSAGE_CHECK))]
    # Transport-level errors stay HTTP errors.
    verify = ssl.create_default_context(cafile=str(est.root_pem))
    bad = httpx.post(est_url(est, "fullcmc"), content=b"!!", auth=("dev", PASSWORD),
                     headers={"Content-Type": "application/pkcs7-mime"}, verify=verify)
    assert bad.status_code == 400
    unauth = httpx.post(est_url(est, "fullcmc"), content=b"MA==",
                        headers={"Content-Type": "application/pkcs7-mime"}, verify=verify)
    assert unauth.status_code == 401


def test_serverkeygen_encrypted_for_the_client_certificate(est: GatehouseServer,
                                                           tmp_path: Path) -> None:
    # An RSA client certificate to encrypt to, enrolled over EST first.
    csr_path = tmp_path / "rsa.b64"
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(tmp_path / "rsa.key"), "-subj", "/CN=rsa.example.test",
                    "-outform", "DER", "-out", str(tmp_path / "rsa.der")],
                   check=True, capture_output=True)
    csr_path.write_bytes(base64.encodebytes((tmp_path / "rsa.der").read_bytes()))
    status, _, body = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}", "-H",
                           "Content-Type: application/pkcs10", "--data-binary", f"@{csr_path}",
                           est_url(est, "simpleenroll"))
    assert status == 200
    cert_pem = pkcs7_to_pem(body, tmp_path, "rsa")
    cert = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0]
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    # A CSR asking for an encrypted key (RFC 7030 §4.4.1.2).
    _, throwaway = make_csr(None)
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                           "enc.example.test")]))
               .add_attribute(x509.ObjectIdentifier("1.2.840.113549.1.9.16.2.54"), ski,
                              _tag=_ASN1Type.OctetString)
               .sign(throwaway, hashes.SHA256()))  # type: ignore[arg-type]
    (tmp_path / "enc.b64").write_bytes(base64.encodebytes(request.public_bytes(Encoding.DER)))
    # HTTP Basic authenticates; the TLS client certificate (issued under this profile)
    # is the recipient of the encrypted key.
    status, headers, body = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}",
                                 "--cert", str(cert_pem),
                                 "--key", str(tmp_path / "rsa.key"), "-H",
                                 "Content-Type: application/pkcs10", "--data-binary",
                                 f"@{tmp_path / 'enc.b64'}", est_url(est, "serverkeygen"))
    assert status == 200, body
    boundary = re.search(r"boundary=(\S+)", headers["content-type"])
    assert boundary
    chunks = body.split(f"--{boundary.group(1)}".encode())
    key_part = chunks[1]
    assert b"smime-type=server-generated-key" in key_part
    enveloped = base64.b64decode(b"".join(key_part.split(b"\r\n\r\n", 1)[1].split()))
    (tmp_path / "env.der").write_bytes(enveloped)
    openssl("cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "env.der"), "-recip",
            str(cert_pem), "-inkey", str(tmp_path / "rsa.key"), "-out",
            str(tmp_path / "signed.der"))
    # Inside: the key package, signed by the gateway's TLS server certificate.
    openssl("cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "signed.der"),
            "-CAfile", str(est.root_pem), "-purpose", "any", "-out", str(tmp_path / "pkg.der"))
    package = core.Sequence.load((tmp_path / "pkg.der").read_bytes())
    (tmp_path / "pkcs8.der").write_bytes(package.contents)
    key_pub = openssl("pkey", "-inform", "DER", "-in", str(tmp_path / "pkcs8.der"), "-pubout")
    cert_part = chunks[2].split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
    issued = pkcs7_to_pem(cert_part, tmp_path, "enc-cert")
    assert key_pub == openssl("x509", "-in", str(issued), "-noout", "-pubkey")
    assert "enc.example.test" in openssl("x509", "-in", str(issued), "-noout", "-subject")
    # Asking for an encrypted key without the named client certificate is refused.
    status, _, body = curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}", "-H",
                           "Content-Type: application/pkcs10", "--data-binary",
                           f"@{tmp_path / 'enc.b64'}", est_url(est, "serverkeygen"))
    assert status == 403
    _ = openssl_csr  # the helper set is shared; this module builds CSRs in Python


def test_fullcmc_held_request_is_pending_then_issued_after_approval(est: GatehouseServer,
                                                                    tmp_path: Path) -> None:
    csr, key = make_csr("held-cmc.example.test")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    message = _signed(_pki_data([], [_tcr(4, csr)]), key)
    response, _ = _post(est, message, tmp_path, "iot")
    assert [s[:2] for s in _statuses(response)] == [(3, [4])]
    control = next(c for c in response["control_sequence"])
    info = cmc.CMCStatusInfoV2.load(control["attr_values"][0].dump())
    assert info["other_info"].name == "pend_info"
    request_id = info["other_info"].chosen["pend_token"].native.decode()
    run_cli(["requests", "approve", request_id], est.data_dir)
    response, resp_path = _post(est, message, tmp_path, "iot")
    assert _statuses(response) == [(0, [4], None)]
    printed = openssl("pkcs7", "-inform", "DER", "-in", str(resp_path), "-print_certs")
    assert "held-cmc.example.test" in printed


def test_serverkeygen_encrypted_with_a_pre_shared_key(est: GatehouseServer,
                                                      tmp_path: Path) -> None:
    _, throwaway = make_csr(None)
    base = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kek.example.test")]))

    def ask(key_id: bytes) -> tuple[int, dict[str, str], bytes]:
        request = base.add_attribute(x509.ObjectIdentifier("1.2.840.113549.1.9.16.2.37"),
                                     key_id, _tag=_ASN1Type.OctetString)
        csr = request.sign(throwaway, hashes.SHA256())  # type: ignore[arg-type]
        (tmp_path / "kek.b64").write_bytes(base64.encodebytes(csr.public_bytes(Encoding.DER)))
        return curl("--cacert", str(est.root_pem), "-u", f"dev:{PASSWORD}", "-H",
                    "Content-Type: application/pkcs10", "--data-binary",
                    f"@{tmp_path / 'kek.b64'}", est_url(est, "serverkeygen"))

    status, headers, body = ask(bytes.fromhex(KEK_ID))
    assert status == 200, body
    boundary = re.search(r"boundary=(\S+)", headers["content-type"])
    assert boundary
    key_part = body.split(f"--{boundary.group(1)}".encode())[1]
    assert b"smime-type=server-generated-key" in key_part
    enveloped = base64.b64decode(b"".join(key_part.split(b"\r\n\r\n", 1)[1].split()))
    (tmp_path / "env.der").write_bytes(enveloped)
    openssl("cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "env.der"),
            "-secretkey", KEK, "-secretkeyid", KEK_ID, "-out", str(tmp_path / "signed.der"))
    openssl("cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "signed.der"),
            "-CAfile", str(est.root_pem), "-purpose", "any", "-out", str(tmp_path / "pkg.der"))
    package = core.Sequence.load((tmp_path / "pkg.der").read_bytes())
    (tmp_path / "pkcs8.der").write_bytes(package.contents)
    assert "PRIVATE KEY" in openssl("pkey", "-inform", "DER", "-in", str(tmp_path / "pkcs8.der"))
    # An identifier the server does not know: 400.
    status, _, body = ask(b"\xff\xff")
    assert status == 400 and b"DecryptKeyIdentifier" in body
