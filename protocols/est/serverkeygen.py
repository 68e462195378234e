"""``/serverkeygen`` (RFC 7030 §4.4): the server makes the key pair, then enrolls it.

The client's CSR (signed with any key it holds, RFC 7030 §4.4.1) supplies the subject
and requested extensions; its signature is checked here, then a CSR with the same
subject and extensions is rebuilt around the new key and sent through the pipeline as
``Operation.SERVER_KEYGEN``.  The answer is multipart/mixed: the private key as
``application/pkcs8`` (or, when the CSR carries an AsymmetricDecryptKeyIdentifier or a
DecryptKeyIdentifier, as CMS EnvelopedData of a SignedData of the key package,
``smime-type=server-generated-key``) and the certificate as certs-only.

The gateway never stores private keys, so a request that is not issued at once (manual
approval, a queueing CA) cannot be answered later: such profiles refuse serverkeygen.
"""

from __future__ import annotations

import logging
import os

from asn1crypto import core
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gateway.errors import ErrorKind, GatewayError
from gateway.model import Operation, RequestState
from protocols.cms import certs_only
from protocols.est.call import Call, EnrollPort, Reply
from protocols.est.envelope import OID_KEY_PACKAGE, envelope_for, envelope_for_kek, key_package
from protocols.est.wire import CERTS_ONLY, PKCS8, SERVER_KEY, multipart

OID_DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.37"  # RFC 4108 id-aa-decryptKeyID
OID_ASYMM_DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.54"  # RFC 7030 §4.4.1.2

log = logging.getLogger("gatehouse.est")


class _AnySet(core.SetOf):  # type: ignore[misc]
    _child_spec = core.Any


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def generate_key(key_type: str) -> PrivateKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(65537, int(key_type.removeprefix("rsa-")))


def rebuild_csr(csr: x509.CertificateSigningRequest, key: PrivateKey) -> x509.CertificateSigningRequest:
    """A CSR with ``csr``'s subject and requested extensions, for (and signed by) ``key``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(csr.subject)
    try:
        for extension in csr.extensions:
            builder = builder.add_extension(extension.value, critical=extension.critical)
    except ValueError as exc:
        raise GatewayError(ErrorKind.BAD_CSR, "the CSR's extensions cannot be parsed") from exc
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def requested_encryption(csr_der: bytes) -> tuple[str, bytes] | None:
    """(attribute OID, key identifier) when the CSR asks for an encrypted key."""
    info = asn1_csr.CertificationRequest.load(csr_der)["certification_request_info"]
    for attribute in info["attributes"]:
        oid = attribute["type"].dotted
        if oid in (OID_DECRYPT_KEY_ID, OID_ASYMM_DECRYPT_KEY_ID):
            values = _AnySet.load(attribute["values"].dump())
            if len(values) != 1:
                raise GatewayError(ErrorKind.BAD_CSR, "the key-encryption attribute needs "
                                   "exactly one value")
            # Both attributes carry an OCTET STRING key identifier (RFC 4108, RFC 7030).
            return oid, bytes(core.OctetString.load(values[0].dump()).native)
    return None


async def serverkeygen(enroller: EnrollPort, call: Call) -> Reply:
    auth = enroller.auth
    creds = auth.credentials(call.scope, call.headers)
    principal = await auth.principal(call.profile, call.settings.auth, creds)
    profile = enroller.gateway.config.profiles[call.profile]
    if profile.approval == "manual":
        raise GatewayError(ErrorKind.FORBIDDEN, "serverkeygen is not offered on profiles with "
                           "manual approval: the gateway keeps no private keys")
    csr, der = enroller.read_csr(call)
    enroller.check_channel_binding(call, creds, csr)
    if not csr.is_signature_valid:
        raise GatewayError(ErrorKind.BAD_CSR, "the CSR's signature does not verify")
    try:
        encryption = requested_encryption(der)
    except (ValueError, TypeError) as exc:
        raise GatewayError(ErrorKind.MALFORMED, "the CSR's attributes cannot be parsed") from exc
    recipient = None
    kek: tuple[bytes, bytes] | None = None
    if encryption is not None:
        oid, key_id = encryption
        if oid == OID_DECRYPT_KEY_ID:
            kek = (key_id, _kek(enroller, key_id))
        else:
            recipient = auth.client_cert(call.profile, creds)
            if recipient is None:
                raise GatewayError(ErrorKind.FORBIDDEN, "an encrypted key needs the TLS client "
                                   "certificate named by AsymmetricDecryptKeyIdentifier")
            _check_key_id(recipient, key_id)
    key = generate_key(call.settings.serverkeygen_key_type)
    new_csr = rebuild_csr(csr, key)
    new_der = new_csr.public_bytes(Encoding.DER)
    result = await enroller.submit(call, Operation.SERVER_KEYGEN, new_csr, new_der, principal,
                                   idempotent=False)
    if result.state is not RequestState.ISSUED or result.certificate is None:
        raise GatewayError(ErrorKind.BACKEND_UNAVAILABLE,
                           f"request {result.request_id} was not issued at once; "
                           "server-generated keys cannot be delivered later")
    pkcs8 = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    if recipient is None and kek is None:
        key_part = (PKCS8, pkcs8)
    else:
        signed = enroller.signer.sign(OID_KEY_PACKAGE, key_package(pkcs8), [])
        if recipient is not None:
            enveloped = envelope_for(recipient, signed)
        else:
            assert kek is not None
            enveloped = envelope_for_kek(kek[0], kek[1], signed)
        key_part = (SERVER_KEY, enveloped)
    content_type, body = multipart([key_part,
                                    (CERTS_ONLY, certs_only([result.certificate.der]))])
    return 200, [(b"content-type", content_type.encode())], body


def _kek(enroller: EnrollPort, key_id: bytes) -> bytes:
    """The pre-shared key for a DecryptKeyIdentifier, from ``est.serverkeygen_keks``."""
    keks = {bytes.fromhex(k): env for k, env in
            enroller.gateway.config.est.serverkeygen_keks.items()}
    env = keks.get(key_id)
    if env is None:
        raise GatewayError(ErrorKind.BAD_CSR, "DecryptKeyIdentifier names no key this server "
                           "knows")
    try:
        kek = bytes.fromhex(os.environ.get(env, ""))
    except ValueError:
        kek = b""
    if len(kek) not in (16, 24, 32):
        log.error("EST KEK is not set or not 16/24/32 hex-encoded bytes", extra={"env": env})
        raise GatewayError(ErrorKind.INTERNAL, "key-encryption key unavailable")
    return kek


def _check_key_id(cert: x509.Certificate, key_id: bytes) -> None:
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    if key_id != ski:
        raise GatewayError(ErrorKind.BAD_CSR, "AsymmetricDecryptKeyIdentifier does not name "
                           "the TLS client certificate's key")
