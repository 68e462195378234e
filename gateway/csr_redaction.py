"""Keep challenge passwords out of the database (docs/security.md, rule 8).

SCEP devices (RFC 8894 §3.3.1) and EST clients using channel binding (RFC 7030 §3.5) put
a challengePassword attribute (PKCS #9, RFC 2985 §5.4.1) in their CSR.  The pipeline
persists every request's CSR, so the stored copy is *redacted*: the attribute is removed
and the rest of the CSR kept byte for byte.  The redacted CSR's own signature no longer
verifies (the signature covers the attributes), so the row records that the original's
signature was verified when it was received, and the pipeline trusts that fact for the
stored request.
"""

from __future__ import annotations

from asn1crypto import csr as asn1_csr

CHALLENGE_PASSWORD_OID = "1.2.840.113549.1.9.7"  # noqa: S105 - an OID (PKCS #9), not a secret


def redact_challenge(csr_der: bytes) -> bytes | None:
    """``csr_der`` without its challengePassword attribute; None when it has none.

    Raises ValueError or TypeError when the DER is not a CSR (the caller keeps the bytes
    as they are: such a request is refused by the policy anyway).
    """
    request = asn1_csr.CertificationRequest.load(csr_der)
    info = request["certification_request_info"]
    attributes = info["attributes"]
    kept = [a for a in attributes if a["type"].dotted != CHALLENGE_PASSWORD_OID]
    if len(kept) == len(attributes):
        return None
    redacted_info = asn1_csr.CertificationRequestInfo({
        "version": info["version"],
        "subject": info["subject"],
        "subject_pk_info": info["subject_pk_info"],
        "attributes": asn1_csr.CRIAttributes(kept),
    })
    redacted = asn1_csr.CertificationRequest({
        "certification_request_info": redacted_info,
        "signature_algorithm": request["signature_algorithm"],
        "signature": request["signature"],
    })
    return bytes(redacted.dump())


def has_challenge(csr_der: bytes) -> bool:
    try:
        return redact_challenge(csr_der) is not None
    except (ValueError, TypeError):
        return False
