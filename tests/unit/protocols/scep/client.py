"""A small SCEP client for tests: builds pkiMessages and reads CertReps (RFC 8894).

It uses the same CMS helpers as the server (protocols.cms) for the plumbing, but every
message it builds is checked against the real clients' captured vectors in
tests/vectors/scep and against openssl in the e2e tests.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from dataclasses import dataclass, field

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from protocols import cms as cmslib
from protocols.scep.message import IssuerAndSubject
from protocols.scep.vocabulary import (
    OID_FAIL_INFO,
    OID_FAIL_INFO_TEXT,
    OID_MESSAGE_TYPE,
    OID_PKI_STATUS,
    OID_RECIPIENT_NONCE,
    OID_SENDER_NONCE,
    OID_TRANSACTION_ID,
    MessageType,
)

DER = serialization.Encoding.DER


def self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cn: str = "SCEP SIGNER"
                ) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1)).sign(key, hashes.SHA256()))


def csr_with_challenge(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cn: str | None,
                       challenge: str | None, *, uris: tuple[str, ...] = (),
                       dns: tuple[str, ...] = ()) -> bytes:
    from cryptography.x509.oid import AttributeOID

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(DER)


@dataclass
class Reply:
    status: str
    fail_info: str | None
    fail_text: str | None
    transaction_id: str
    recipient_nonce: bytes
    sender_nonce: bytes
    certificates: list[x509.Certificate] = field(default_factory=list)
    crl_der: bytes | None = None
    digest: str = ""
    cipher: str | None = None
    signer: x509.Certificate | None = None


@dataclass
class Client:
    """One device: its key, the certificate it signs with, and the RA it encrypts to."""

    ra_der: bytes
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    signer: x509.Certificate
    digest: str = "sha256"
    cipher: str = "aes128_cbc"
    transaction_id: str = field(default_factory=lambda: base64.b64encode(os.urandom(20)).decode())
    last_nonce: bytes = b""

    @property
    def signer_der(self) -> bytes:
        return self.signer.public_bytes(DER)

    def message(self, message_type: MessageType, inner: bytes, *,
                extra: tuple[cms.CMSAttribute, ...] = (), recipients: tuple[bytes, ...] | None = None
                ) -> bytes:
        self.last_nonce = os.urandom(16)
        envelope = cmslib.envelope(inner, list(recipients or (self.ra_der,)), cipher=self.cipher)
        attributes = [
            cmslib.attribute(OID_TRANSACTION_ID, core.PrintableString(self.transaction_id)),
            cmslib.attribute(OID_MESSAGE_TYPE, core.PrintableString(message_type.value)),
            cmslib.attribute(OID_SENDER_NONCE, core.OctetString(self.last_nonce)),
            *extra,
        ]
        return cmslib.sign(envelope, signer_der=self.signer_der, signer_key=self.key,
                           digest=self.digest, attributes=attributes)

    def pkcs_req(self, csr_der: bytes) -> bytes:
        return self.message(MessageType.PKCS_REQ, csr_der)

    def renewal_req(self, csr_der: bytes) -> bytes:
        return self.message(MessageType.RENEWAL_REQ, csr_der)

    def cert_poll(self, issuer: x509.Name, subject: x509.Name) -> bytes:
        value = IssuerAndSubject({"issuer": asn1_x509.Name.load(issuer.public_bytes()),
                                  "subject": asn1_x509.Name.load(subject.public_bytes())})
        return self.message(MessageType.CERT_POLL, value.dump())

    def get_cert(self, issuer: x509.Name, serial: int,
                 message_type: MessageType = MessageType.GET_CERT) -> bytes:
        value = cms.IssuerAndSerialNumber({"issuer": asn1_x509.Name.load(issuer.public_bytes()),
                                           "serial_number": serial})
        return self.message(message_type, value.dump())

    def _openssl_decrypt(self, enveloped: bytes) -> bytes:
        assert isinstance(self.key, ec.EllipticCurvePrivateKey)
        return _openssl_decrypt_impl(enveloped, self.key, self.signer)

    def read(self, der: bytes) -> Reply:
        """Verify and decode a CertRep; decrypts SUCCESS content with our key."""
        info = cmslib.load_content_info(der, "signed_data")
        signed = info["content"]
        result = cmslib.verify_signed_data(signed, allowed_digests=cmslib.DIGESTS)
        signer = result.signers[0]
        attrs = signer.attributes

        def text(oid: str) -> str | None:
            values = attrs.get(oid)
            return str(values[0].parsed.native if isinstance(values[0], core.Any)
                       else values[0].native) if values else None

        def octets(oid: str) -> bytes:
            values = attrs.get(oid)
            if not values:
                return b""
            value = values[0].parsed if isinstance(values[0], core.Any) else values[0]
            return bytes(value.native)

        reply = Reply(status=text(OID_PKI_STATUS) or "", fail_info=text(OID_FAIL_INFO),
                      fail_text=text(OID_FAIL_INFO_TEXT),
                      transaction_id=text(OID_TRANSACTION_ID) or "",
                      recipient_nonce=octets(OID_RECIPIENT_NONCE),
                      sender_nonce=octets(OID_SENDER_NONCE), digest=signer.digest,
                      signer=signer.certificate)
        assert text(OID_MESSAGE_TYPE) == MessageType.CERT_REP.value
        if reply.status == "0":
            if isinstance(self.key, rsa.RSAPrivateKey):
                envelope = cmslib.load_content_info(result.content, "enveloped_data")["content"]
                opened = cmslib.open_envelope(envelope, certificate_der=self.signer_der,
                                       key=self.key, allowed_ciphers=cmslib.CIPHERS)
                reply.cipher, plain = opened.cipher, opened.content
            else:
                plain = self._openssl_decrypt(result.content)  # ECDH (RFC 5753)
            degenerate = cmslib.load_content_info(plain, "signed_data")["content"]
            for choice in degenerate["certificates"] or []:
                reply.certificates.append(x509.load_der_x509_certificate(choice.chosen.dump()))
            crls = degenerate["crls"]
            if isinstance(crls, cms.RevocationInfoChoices) and len(crls):
                reply.crl_der = crls[0].chosen.dump()
        return reply


def _openssl_decrypt_impl(enveloped: bytes, key: ec.EllipticCurvePrivateKey,
                          cert: x509.Certificate) -> bytes:
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "env.der").write_bytes(enveloped)
        (Path(tmp) / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (Path(tmp) / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        result = subprocess.run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER",
                                 "-in", f"{tmp}/env.der", "-recip", f"{tmp}/cert.pem",
                                 "-inkey", f"{tmp}/key.pem"], capture_output=True,
                                timeout=60, check=True)
        return result.stdout


def ra_from_ca_ra_cert(p7: bytes) -> tuple[bytes, list[x509.Certificate]]:
    """(RA certificate DER, all certificates) of a GetCACert answer: the RA is the one
    with keyEncipherment that is not a CA."""
    info = cmslib.load_content_info(p7, "signed_data")
    certs = [x509.load_der_x509_certificate(c.chosen.dump())
             for c in info["content"]["certificates"]]
    for cert in certs:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            return cert.public_bytes(DER), certs
    raise AssertionError("no RA certificate in GetCACert")
