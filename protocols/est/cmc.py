"""CMC structures (RFC 5272 §3, ASN.1 module of RFC 5272 Appendix A, IMPLICIT TAGS) and
the CMS signing/verification EST's ``/fullcmc`` needs (RFC 5273, RFC 7030 §4.3).

Only what the gateway understands is modelled: PKIData with PKCS#10 requests
(TaggedCertificationRequest) and the controls transactionId, senderNonce and
revokeRequest; answers are PKIResponse with CMCStatusInfoV2.
"""

from __future__ import annotations

from enum import IntEnum

from asn1crypto import core
from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509

OID_PKI_DATA = "1.3.6.1.5.5.7.12.2"  # id-cct-PKIData
OID_PKI_RESPONSE = "1.3.6.1.5.5.7.12.3"  # id-cct-PKIResponse
OID_STATUS_INFO = "1.3.6.1.5.5.7.7.1"  # id-cmc-statusInfo (v1)
OID_STATUS_INFO_V2 = "1.3.6.1.5.5.7.7.25"  # id-cmc-statusInfoV2
OID_TRANSACTION_ID = "1.3.6.1.5.5.7.7.5"
OID_SENDER_NONCE = "1.3.6.1.5.5.7.7.6"
OID_RECIPIENT_NONCE = "1.3.6.1.5.5.7.7.7"
OID_REVOKE_REQUEST = "1.3.6.1.5.5.7.7.17"

# Controls understood in requests (RFC 5272 §6); any other control fails the message.
SUPPORTED_CONTROLS = frozenset({OID_TRANSACTION_ID, OID_SENDER_NONCE, OID_REVOKE_REQUEST})


class CMCStatus(IntEnum):
    """RFC 5272 §6.1.1."""

    SUCCESS = 0
    FAILED = 2
    PENDING = 3
    NO_SUPPORT = 4
    CONFIRM_REQUIRED = 5
    POP_REQUIRED = 6
    PARTIAL = 7


class CMCFailInfo(IntEnum):
    """RFC 5272 §6.1.4."""

    BAD_ALG = 0
    BAD_MESSAGE_CHECK = 1
    BAD_REQUEST = 2
    BAD_TIME = 3
    BAD_CERT_ID = 4
    UNSUPPORTED_EXT = 5
    MUST_ARCHIVE_KEYS = 6
    BAD_IDENTITY = 7
    POP_REQUIRED = 8
    POP_FAILED = 9
    NO_KEY_REUSE = 10
    INTERNAL_CA_ERROR = 11
    TRY_LATER = 12
    AUTH_DATA_FAIL = 13


class _AnySet(core.SetOf):  # type: ignore[misc]
    _child_spec = core.Any


class TaggedAttribute(core.Sequence):  # type: ignore[misc]
    _fields = [("body_part_id", core.Integer), ("attr_type", core.ObjectIdentifier),
               ("attr_values", _AnySet)]


class TaggedCertificationRequest(core.Sequence):  # type: ignore[misc]
    _fields = [("body_part_id", core.Integer),
               ("certification_request", asn1_csr.CertificationRequest)]


class _Opaque(core.Sequence):  # type: ignore[misc]
    """A structure the gateway does not parse (CRMF CertReqMsg, ORM)."""

    _fields: list[tuple[str, type]] = []


class TaggedRequest(core.Choice):  # type: ignore[misc]
    _alternatives = [("tcr", TaggedCertificationRequest, {"implicit": 0}),
                     ("crm", _Opaque, {"implicit": 1}),
                     ("orm", _Opaque, {"implicit": 2})]


class TaggedContentInfo(core.Sequence):  # type: ignore[misc]
    _fields = [("body_part_id", core.Integer), ("content_info", core.Any)]


class OtherMsg(core.Sequence):  # type: ignore[misc]
    _fields = [("body_part_id", core.Integer), ("other_msg_type", core.ObjectIdentifier),
               ("other_msg_value", core.Any)]


class _Controls(core.SequenceOf):  # type: ignore[misc]
    _child_spec = TaggedAttribute


class _Requests(core.SequenceOf):  # type: ignore[misc]
    _child_spec = TaggedRequest


class _ContentInfos(core.SequenceOf):  # type: ignore[misc]
    _child_spec = TaggedContentInfo


class _OtherMsgs(core.SequenceOf):  # type: ignore[misc]
    _child_spec = OtherMsg


class PKIData(core.Sequence):  # type: ignore[misc]
    _fields = [("control_sequence", _Controls), ("req_sequence", _Requests),
               ("cms_sequence", _ContentInfos), ("other_msg_sequence", _OtherMsgs)]


class PKIResponse(core.Sequence):  # type: ignore[misc]
    _fields = [("control_sequence", _Controls), ("cms_sequence", _ContentInfos),
               ("other_msg_sequence", _OtherMsgs)]


class _BodyPartPath(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.Integer


class BodyPartReference(core.Choice):  # type: ignore[misc]
    _alternatives = [("body_part_id", core.Integer), ("body_part_path", _BodyPartPath)]


class _BodyList(core.SequenceOf):  # type: ignore[misc]
    _child_spec = BodyPartReference


class PendInfo(core.Sequence):  # type: ignore[misc]
    _fields = [("pend_token", core.OctetString), ("pend_time", core.GeneralizedTime)]


class OtherStatusInfo(core.Choice):  # type: ignore[misc]
    """failInfo or pendInfo.  extendedFailInfo (also a SEQUENCE, so indistinguishable
    from pendInfo by tag in this untagged CHOICE) is never sent and not modelled."""

    _alternatives = [("fail_info", core.Integer), ("pend_info", PendInfo)]


class CMCStatusInfoV2(core.Sequence):  # type: ignore[misc]
    _fields = [("cmc_status", core.Integer), ("body_list", _BodyList),
               ("status_string", core.UTF8String, {"optional": True}),
               ("other_info", OtherStatusInfo, {"optional": True})]


class CRLReason(core.Enumerated):  # type: ignore[misc]
    _map = {0: "unspecified", 1: "key_compromise", 2: "ca_compromise",
            3: "affiliation_changed", 4: "superseded", 5: "cessation_of_operation",
            6: "certificate_hold", 8: "remove_from_crl", 9: "privilege_withdrawn",
            10: "aa_compromise"}


class RevokeRequest(core.Sequence):  # type: ignore[misc]
    """RFC 5272 §6.11."""

    _fields = [("issuer_name", asn1_x509.Name), ("serial_number", core.Integer),
               ("reason", CRLReason),
               ("invalidity_date", core.GeneralizedTime, {"optional": True}),
               ("passphrase", core.OctetString, {"optional": True}),
               ("comment", core.UTF8String, {"optional": True})]


def tagged_attribute(body_part_id: int, oid: str, value: core.Asn1Value) -> TaggedAttribute:
    return TaggedAttribute({"body_part_id": body_part_id, "attr_type": oid,
                            "attr_values": [core.Any.load(value.dump())]})


def status_v2(status: CMCStatus, body_parts: list[int], text: str | None = None,
              fail_info: CMCFailInfo | None = None,
              pend_info: PendInfo | None = None) -> CMCStatusInfoV2:
    value: dict[str, object] = {
        "cmc_status": int(status),
        "body_list": [BodyPartReference(name="body_part_id", value=i) for i in body_parts],
    }
    if text:
        value["status_string"] = text
    if fail_info is not None:
        value["other_info"] = OtherStatusInfo(name="fail_info", value=int(fail_info))
    elif pend_info is not None:
        value["other_info"] = OtherStatusInfo(name="pend_info", value=pend_info)
    return CMCStatusInfoV2(value)
