"""SCEP's closed value sets and attribute OIDs (RFC 8894 §3.2.1)."""

from __future__ import annotations

from enum import StrEnum

OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
OID_FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"  # RFC 8894 §3.2.1.4.5
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"


class MessageType(StrEnum):
    """RFC 8894 §3.2.1.2 messageType values (PrintableString decimal)."""

    CERT_REP = "3"
    RENEWAL_REQ = "17"
    UPDATE_REQ = "18"  # obsolete draft message; treated like RenewalReq
    PKCS_REQ = "19"
    CERT_POLL = "20"  # GetCertInitial in older drafts
    GET_CERT = "21"
    GET_CRL = "22"


class PkiStatus(StrEnum):
    SUCCESS = "0"
    FAILURE = "2"
    PENDING = "3"


class FailInfo(StrEnum):
    """RFC 8894 §3.2.1.4.4."""

    BAD_ALG = "0"  # unrecognized or unsupported algorithm
    BAD_MESSAGE_CHECK = "1"  # integrity check (signature) failed
    BAD_REQUEST = "2"  # transaction not permitted or supported
    BAD_TIME = "3"  # signingTime not close enough to the system time
    BAD_CERT_ID = "4"  # no certificate matches the criteria


# Algorithm names as asn1crypto spells them.
MODERN_DIGESTS = frozenset({"sha224", "sha256", "sha384", "sha512"})
LEGACY_DIGESTS = frozenset({"sha1"})
MODERN_CIPHERS = frozenset({"aes128_cbc", "aes192_cbc", "aes256_cbc"})
LEGACY_CIPHERS = frozenset({"tripledes_3key", "des"})
