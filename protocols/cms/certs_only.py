"""The one certs-only SignedData builder (RFC 5652 §5, RFC 8894 §3.4, RFC 7030 §4.1.3).

Used by SCEP (GetCACert, GetNextCACert, CertRep, GetCRL) and EST (/cacerts, /simpleenroll,
/serverkeygen).  Hand-written rather than ``cryptography``'s
``pkcs7.serialize_certificates``: that takes parsed ``Certificate`` objects (we hold DER
and would parse it only to re-encode it on every enrollment), and it cannot carry CRLs,
which SCEP's GetCRL answer needs.

**Certificate order.**  ``certificates`` is a ``SET OF`` (RFC 5652 §5.1), and DER orders a
SET OF by the encodings of its elements (X.690 §11.6).  So the order of the arguments is
*not* the order on the wire: the certificates come out sorted by their DER bytes, as
asn1crypto also emits them.  RFC 8894 §4.2.1.2 and RFC 7030 §4.1.3 give
the bag no order, so no client may rely on position: SCEP clients must tell the RA
certificate from the CA by its properties (the RA is the one that is not a CA and carries
keyEncipherment / digitalSignature) or by fingerprint (scepclient's ``-ca-fingerprint``,
docs/scep.md); EST clients build the chain from the bag.  certmonger, scepclient and
OpenSSL are tested against this output (tests/interop, tests/unit/protocols/test_cms.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from protocols.cms.der import content_info, der_int, der_oid, der_seq, der_set, der_tlv


def certs_only(certificates_der: Iterable[bytes], crls_der: Iterable[bytes] = ()) -> bytes:
    """A degenerate SignedData ContentInfo: version 1, no digest algorithms, id-data without
    content, the certificates (and CRLs, if any) as DER SETs OF, no signers.

    The certificates come out in DER SET OF order, not in the order given (see above).
    """
    parts = [der_int(1), der_set(), der_seq(der_oid("data")),
             der_tlv(0xA0, b"".join(sorted(certificates_der)))]
    crls = b"".join(sorted(crls_der))
    if crls:
        parts.append(der_tlv(0xA1, crls))
    parts.append(der_set())
    return content_info("signed_data", der_seq(*parts))
