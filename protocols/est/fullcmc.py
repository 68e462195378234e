"""``/fullcmc`` (RFC 7030 §4.3): Full PKI Requests (RFC 5272) over EST.

Supported: PKCS#10 enrollment in PKIData's reqSequence, the revokeRequest control
(RFC 5272 §6.11; how EST clients revoke), transactionId and senderNonce (echoed, with
recipientNonce, RFC 5272 §6.6).  Any other control, a CRMF/ORM request, or a non-empty
cmsSequence/otherMsgSequence fails the whole message with CMCStatus failed and
CMCFailInfo badRequest naming the body part.  The request must be signed (by a
requested key, a certificate it carries, or the TLS client certificate); the answer is
a PKIResponse signed with the gateway's TLS server key, certificates in SignedData.

Authentication is EST's (profile ``est.auth``).  A revocation is allowed only for a
certificate of the label's profile, and only for the principal that enrolled it (same
kind, id and profile) or for the certificate itself authenticating as the TLS client
(gateway.revocation.service.holder_may_revoke).  CMC-level outcomes are HTTP 200 with
the status inside; transport errors (auth, media type, base64) are HTTP errors.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field, replace
from typing import Any

from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from gateway.errors import ErrorKind, GatewayError, client_detail
from gateway.model import Operation, Principal, RequestState, RevocationReason
from protocols import cms
from protocols.est import cmc
from protocols.est.auth import Credentials, cert_principal
from protocols.est.call import Call, EnrollPort, Reply, load_csr
from protocols.est.errors import cmc_fail_info
from protocols.est.wire import CMC_RESPONSE, PKCS7, b64, decode_body, require_media_type


@dataclass
class _Answer:
    controls: list[cmc.TaggedAttribute] = field(default_factory=list)
    certificates: list[bytes] = field(default_factory=list)
    next_id: int = 1

    def status(self, status: cmc.CMCStatus, parts: list[int], text: str | None = None,
               fail: cmc.CMCFailInfo | None = None,
               pend: cmc.PendInfo | None = None) -> None:
        value = cmc.status_v2(status, parts, text, fail, pend)
        self.add(cmc.OID_STATUS_INFO_V2, value)

    def add(self, oid: str, value: core.Asn1Value) -> None:
        self.controls.append(cmc.tagged_attribute(self.next_id, oid, value))
        self.next_id += 1


async def fullcmc(enroller: EnrollPort, call: Call) -> Reply:
    auth = enroller.auth
    creds = auth.credentials(call.scope, call.headers)
    principal = await _principal(enroller, call, creds)
    client_cert = auth.client_cert(call.profile, creds)
    require_media_type(call.header(b"content-type"), PKCS7)
    der = decode_body(call.body, call.header(b"content-transfer-encoding"), what="CMC request")
    answer = _Answer()
    pki_data = _parse(der, client_cert, answer)
    if pki_data is not None:
        try:
            await _process(enroller, call, principal, pki_data, answer)
        except (ValueError, TypeError, KeyError):
            answer.status(cmc.CMCStatus.FAILED, [], "the CMC request cannot be parsed",
                          cmc.CMCFailInfo.BAD_REQUEST)
    response = cmc.PKIResponse({"control_sequence": answer.controls, "cms_sequence": [],
                                "other_msg_sequence": []})
    body = enroller.signer.sign(cmc.OID_PKI_RESPONSE, response.dump(), answer.certificates)
    return 200, [(b"content-type", CMC_RESPONSE.encode()),
                 (b"content-transfer-encoding", b"base64")], b64(body)


async def _principal(enroller: EnrollPort, call: Call, creds: Credentials) -> Principal:
    """EST authentication (``est.auth``); besides, a certificate the gateway issued under
    this profile, presented as the TLS client certificate, may revoke itself and do
    nothing else (enrollment with a certificate needs one from the profile's anchors)."""
    auth = enroller.auth
    try:
        return await auth.principal(call.profile, call.settings.auth, creds)
    except GatewayError as refused:
        if refused.kind is not ErrorKind.FORBIDDEN or creds.basic is not None \
                or call.settings.auth not in ("any", "client-cert"):
            raise
        try:
            cert = auth.issued_cert(call.profile, creds)
        except GatewayError:
            raise refused from None
        if cert is None:
            raise refused from None
        principal = cert_principal(cert, call.profile)
        return replace(principal, attributes={**principal.attributes, _REVOKE_ONLY: "yes"})


_REVOKE_ONLY = "fullcmc_revoke_only"


def _parse(der: bytes, client_cert: x509.Certificate | None,
           answer: _Answer) -> cmc.PKIData | None:
    """The verified PKIData, or None after recording the failure in ``answer``."""
    try:
        candidates = _request_keys(der)
        if client_cert is not None:
            candidates.append(client_cert.public_key())
        content = _open_signed(der, candidates)
        if content.content_type != cmc.OID_PKI_DATA:
            raise GatewayError(ErrorKind.MALFORMED, "the SignedData does not carry PKIData")
        pki_data: cmc.PKIData = cmc.PKIData.load(content.content, strict=True)
        for control in pki_data["control_sequence"]:  # the shape, parsed now
            _ = (control["body_part_id"].native, control["attr_type"].dotted,
                 len(control["attr_values"]))
        for request in pki_data["req_sequence"]:
            _ = request.name
        _ = len(pki_data["cms_sequence"]), len(pki_data["other_msg_sequence"])
    except GatewayError as exc:
        answer.status(cmc.CMCStatus.FAILED, [], client_detail(exc), cmc_fail_info(exc.kind))
        return None
    except (ValueError, TypeError, KeyError):
        answer.status(cmc.CMCStatus.FAILED, [], "the CMC request cannot be parsed",
                      cmc.CMCFailInfo.BAD_REQUEST)
        return None
    return pki_data


_MAX_SIGNERS = 16  # a request is signed by a key or two; more is an attack on our CPU


def _open_signed(der: bytes, candidate_keys: list[Any]) -> cms.Verified:
    """The CMC request's SignedData, every signer verified by the one CMS verifier: signers
    named by key id may be a requested key or the TLS client certificate (RFC 5272
    §3.2.1.2); MALFORMED when unreadable, BAD_SIGNATURE when a signature is refused."""
    try:
        info = cms.load_content_info(der, "signed_data")
        return cms.verify_signed_data(info["content"], allowed_digests=cms.DIGESTS,
                                      candidate_keys=candidate_keys, max_signers=_MAX_SIGNERS)
    except cms.CmsMalformed as exc:
        raise GatewayError(ErrorKind.MALFORMED, f"the CMC request: {exc.detail}") from exc
    except cms.CmsError as exc:
        raise GatewayError(ErrorKind.BAD_SIGNATURE,
                           f"the CMC request's signature is refused: {exc.detail}") from exc


def _request_keys(der: bytes) -> list[Any]:
    """Public keys of the PKCS#10 requests inside (for signers named by key id)."""
    from asn1crypto import cms

    try:
        info = cms.ContentInfo.load(der)
        inner = bytes(info["content"]["encap_content_info"]["content"].native or b"")
        pki_data = cmc.PKIData.load(inner)
        keys = []
        for request in pki_data["req_sequence"]:
            if request.name == "tcr":
                csr_der = request.chosen["certification_request"].dump()
                keys.append(x509.load_der_x509_csr(csr_der).public_key())
        return keys
    except (ValueError, TypeError, KeyError, x509.InvalidVersion, UnsupportedAlgorithm):
        return []


async def _process(enroller: EnrollPort, call: Call, principal: Principal,
                   pki_data: cmc.PKIData, answer: _Answer) -> None:
    controls = list(pki_data["control_sequence"])
    for control in controls:
        oid = control["attr_type"].dotted
        if oid not in cmc.SUPPORTED_CONTROLS:
            answer.status(cmc.CMCStatus.FAILED, [control["body_part_id"].native],
                          f"unsupported control {oid}", cmc.CMCFailInfo.BAD_REQUEST)
            return
    for name in ("cms_sequence", "other_msg_sequence"):
        if len(pki_data[name]):
            first = pki_data[name][0]["body_part_id"].native
            answer.status(cmc.CMCStatus.FAILED, [first], f"{name} is not supported",
                          cmc.CMCFailInfo.BAD_REQUEST)
            return
    for control in controls:
        oid = control["attr_type"].dotted
        value = control["attr_values"][0] if len(control["attr_values"]) else None
        if value is None:
            continue
        if oid == cmc.OID_TRANSACTION_ID:
            answer.add(oid, core.Integer.load(value.dump()))
        elif oid == cmc.OID_SENDER_NONCE:
            answer.add(cmc.OID_RECIPIENT_NONCE, core.OctetString.load(value.dump()))
            answer.add(cmc.OID_SENDER_NONCE, core.OctetString(os.urandom(16)))
    for control in controls:
        if control["attr_type"].dotted == cmc.OID_REVOKE_REQUEST:
            await _revoke(enroller, call, principal, control, answer)
    for request in pki_data["req_sequence"]:
        await _enroll(enroller, call, principal, request, answer)


async def _revoke(enroller: EnrollPort, call: Call, principal: Principal,
                  control: cmc.TaggedAttribute, answer: _Answer) -> None:
    part = control["body_part_id"].native
    try:
        revoke = cmc.RevokeRequest.load(control["attr_values"][0].dump())
        serial = format(revoke["serial_number"].native, "x")
        reason = RevocationReason.from_code(_reason_code(revoke["reason"]))
        issuer = revoke["issuer_name"]
        _ = issuer.native
    except (ValueError, TypeError, KeyError):
        answer.status(cmc.CMCStatus.FAILED, [part], "the revokeRequest cannot be parsed",
                      cmc.CMCFailInfo.BAD_REQUEST)
        return
    gateway = enroller.gateway
    record = gateway.inventory.certificate(serial)
    found = record is not None and asn1_x509.Certificate.load(record.der).issuer == issuer
    allowed = found and gateway.revocation.may_revoke_as_holder(serial, principal, call.profile)
    try:
        if not found:
            raise GatewayError(ErrorKind.NOT_FOUND, f"no certificate {serial} from that issuer")
        if not allowed:
            raise GatewayError(ErrorKind.FORBIDDEN, "this client may not revoke that certificate")
        await gateway.revocation.revoke(serial, reason, by=f"est:{principal.kind}:{principal.id}")
    except GatewayError as exc:
        answer.status(cmc.CMCStatus.FAILED, [part], client_detail(exc), cmc_fail_info(exc.kind))
        return
    answer.status(cmc.CMCStatus.SUCCESS, [part], "revoked")


def _reason_code(value: cmc.CRLReason) -> int:
    return int.from_bytes(value.contents, "big", signed=True)


async def _enroll(enroller: EnrollPort, call: Call, principal: Principal,
                  request: cmc.TaggedRequest, answer: _Answer) -> None:
    if request.name != "tcr":
        answer.status(cmc.CMCStatus.FAILED, [], f"{request.name} requests are not supported; "
                      "use PKCS#10 (tcr)", cmc.CMCFailInfo.BAD_REQUEST)
        return
    part = request.chosen["body_part_id"].native
    if principal.attributes.get(_REVOKE_ONLY):
        answer.status(cmc.CMCStatus.FAILED, [part], "client certificate refused: enrollment "
                      "needs one issued by a trusted CA of this profile; renew with "
                      "simplereenroll", cmc.CMCFailInfo.BAD_IDENTITY)
        return
    try:
        csr_der = request.chosen["certification_request"].dump()
        csr = load_csr(csr_der)
        enroller.check_channel_binding(call, enroller.auth.credentials(call.scope, call.headers),
                                       csr)
        result = await enroller.submit(call, Operation.ENROLL, csr, csr_der, principal)
    except GatewayError as exc:
        answer.status(cmc.CMCStatus.FAILED, [part], client_detail(exc), cmc_fail_info(exc.kind))
        return
    if result.state is RequestState.ISSUED and result.certificate is not None:
        answer.certificates.append(result.certificate.der)
        answer.status(cmc.CMCStatus.SUCCESS, [part], "issued")
        return
    retry = result.retry_after or call.settings.retry_after
    pend = cmc.PendInfo({"pend_token": result.request_id.encode(),
                         "pend_time": enroller.gateway.clock.now() + dt.timedelta(seconds=retry)})
    answer.status(cmc.CMCStatus.PENDING, [part], f"request {result.request_id} is "
                  f"{result.state.value}", pend=pend)
