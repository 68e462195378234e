"""revokeCert (RFC 8555 §7.6): signed by the issuing account or by the certificate's key."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import ErrorKind, GatewayError
from gateway.model import Protocol, RevocationReason
from protocols.acme import jws
from protocols.acme.problems import AcmeProblem, ProblemType, from_gateway_error, malformed, unauthorized
from protocols.acme.service import AcmeService, Directory, Reply, Signed


def _spki(key: Any) -> bytes:
    data: bytes = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return data


async def revoke_cert(service: AcmeService, directory: Directory, signed: Signed) -> Reply:
    payload = signed.jws.payload_json()
    der = jws.b64decode(payload.get("certificate"), "certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise malformed("'certificate' is not a DER certificate") from None
    code = payload.get("reason", 0)
    if not isinstance(code, int) or isinstance(code, bool):
        raise AcmeProblem(ProblemType.BAD_REVOCATION_REASON, "'reason' must be an integer")
    try:
        reason = RevocationReason.from_code(code)
    except ValueError:
        raise AcmeProblem(ProblemType.BAD_REVOCATION_REASON,
                          f"{code} is not a CRLReason code (RFC 5280 §5.3.1)") from None
    if reason in (RevocationReason.CA_COMPROMISE, RevocationReason.AA_COMPROMISE,
                  RevocationReason.REMOVE_FROM_CRL, RevocationReason.CERTIFICATE_HOLD):
        raise AcmeProblem(ProblemType.BAD_REVOCATION_REASON,
                          f"reason {reason.value} cannot be requested over ACME")
    serial = format(cert.serial_number, "x")
    record = service.state.certificate(serial)
    if record is None or record.der != der:
        raise AcmeProblem(ProblemType.MALFORMED, "this CA did not issue that certificate", 404)
    if record.revoked:
        raise AcmeProblem(ProblemType.ALREADY_REVOKED, "the certificate is already revoked")
    owner = record.principal_id if record.protocol == Protocol.ACME.value else None
    if signed.account is not None:
        if owner != signed.account.id:
            raise unauthorized("the account did not order this certificate")
        by = f"acme-account:{signed.account.id}"
    else:
        key = jws.load_jwk(signed.jws.jwk or {})
        if _spki(key) != _spki(cert.public_key()):
            raise unauthorized("the JWS key is not the certificate's key")
        by = "acme-certificate-key"
    try:
        await service.gateway.revocation.revoke(serial, reason, by=by)
    except GatewayError as exc:
        if exc.kind is ErrorKind.CONFLICT:
            raise AcmeProblem(ProblemType.ALREADY_REVOKED, exc.detail) from None
        raise from_gateway_error(exc) from None
    return Reply(None)
