"""CMS (RFC 5652) for every protocol of the gateway: one package, one way to do each job.

- ``certs_only``  the one certs-only ("degenerate") SignedData builder (certificates in DER
  SET OF order, not the order given: see ``protocols.cms.certs_only``);
- ``signed``      ``sign`` (one SignerInfo) and ``verify_signed_data``, the one verifier;
- ``enveloped``   ``envelope`` / ``envelope_for_kek`` and ``open_envelope``;
- ``der``         the small DER writer they share; ``errors`` the typed failures.

SCEP (protocols/scep) and EST (protocols/est: /cacerts, /simpleenroll, /serverkeygen,
/fullcmc) use only this package for CMS; they map its errors to their own vocabulary.
"""

from protocols.cms.certs_only import certs_only
from protocols.cms.der import (
    content_info,
    der_int,
    der_octets,
    der_oid,
    der_printable,
    der_seq,
    der_set,
    der_tlv,
    der_utf8,
    issuer_and_serial_der,
)
from protocols.cms.enveloped import CIPHERS, Opened, envelope, envelope_for_kek, open_envelope
from protocols.cms.errors import (
    CmsBadSignature,
    CmsError,
    CmsMalformed,
    CmsNotForUs,
    CmsUnsupportedAlgorithm,
)
from protocols.cms.signed import (
    DIGESTS,
    Signer,
    SignerKey,
    Verified,
    attribute,
    encapsulated_content,
    load_content_info,
    same_name,
    sign,
    signed_attributes,
    verify_signed_data,
)

__all__ = [
    "CIPHERS", "DIGESTS", "CmsBadSignature", "CmsError", "CmsMalformed", "CmsNotForUs",
    "CmsUnsupportedAlgorithm", "Opened", "Signer", "SignerKey", "Verified", "attribute",
    "certs_only", "content_info", "der_int", "der_octets", "der_oid", "der_printable",
    "der_seq", "der_set", "der_tlv", "der_utf8", "encapsulated_content", "envelope",
    "envelope_for_kek", "issuer_and_serial_der", "load_content_info", "open_envelope",
    "same_name", "sign", "signed_attributes", "verify_signed_data",
]
