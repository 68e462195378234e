"""Typed CMS failures, so each protocol answers in its own vocabulary (SCEP failInfo,
EST status / CMCFailInfo).  ``detail`` is safe to show a client."""

from __future__ import annotations


class CmsError(Exception):
    """A CMS structure cannot be used; ``detail`` is safe to show a client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CmsMalformed(CmsError):
    """Not DER, not the expected content type, or a required field is missing."""


class CmsUnsupportedAlgorithm(CmsError):
    """A digest, signature, key transport or content cipher we do not (or may not) use."""


class CmsBadSignature(CmsError):
    """A SignerInfo does not verify (RFC 5652 §5.6), or its signer is unknown."""


class CmsNotForUs(CmsError):
    """No RecipientInfo names our certificate, or its key does not open the envelope."""
