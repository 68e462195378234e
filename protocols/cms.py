"""CMS / PKCS#7 helpers shared by EST and SCEP (asn1crypto).

asn1crypto is used because cryptography's PKCS#7 API cannot build or parse the
EnvelopedData and SignedData structures SCEP needs, and its certs-only serializer does
not take DER input as-is.
"""

from __future__ import annotations

from collections.abc import Iterable

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509


def certs_only(certificates_der: Iterable[bytes]) -> bytes:
    """A degenerate ("certs-only") SignedData, RFC 5652 §5 / RFC 8894 §3.4 / RFC 7030 §4.1.3.

    No signers, no content: just the certificates, in the order given.
    """
    signed = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [],
        "encap_content_info": {"content_type": "data"},
        "certificates": [asn1_x509.Certificate.load(der) for der in certificates_der],
        "signer_infos": [],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())
