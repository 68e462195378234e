"""Defensive loading of CSRs and certificates from bytes of unknown quality.

Every failure is a GatewayError(MALFORMED or BAD_CSR) with a one-line reason; nothing
here lets a parser exception escape to become a 500.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import NameOID

from gateway.errors import ErrorKind, GatewayError

MAX_CSR_BYTES = 64 * 1024
_PEM_CSR = re.compile(
    rb"-----BEGIN (NEW )?CERTIFICATE REQUEST-----(.+?)-----END (NEW )?CERTIFICATE REQUEST-----",
    re.DOTALL,
)


def load_csr(data: bytes) -> tuple[x509.CertificateSigningRequest, bytes]:
    """PEM or DER PKCS#10 → (parsed CSR, DER)."""
    if len(data) > MAX_CSR_BYTES:
        raise GatewayError(ErrorKind.PAYLOAD_TOO_LARGE,
                           f"CSR larger than {MAX_CSR_BYTES} bytes")
    if data[:1] == b"\x30":
        # Binary DER: never strip, its last bytes may look like white space.
        return load_csr_der(data), data
    stripped = data.strip()
    if not stripped:
        raise GatewayError(ErrorKind.MALFORMED, "empty CSR")
    if stripped.startswith(b"-----BEGIN"):
        match = _PEM_CSR.search(stripped)
        if match is None:
            raise GatewayError(ErrorKind.MALFORMED,
                               "PEM data is not a CERTIFICATE REQUEST block")
        der = decode_base64(match.group(2), what="CSR PEM body")
    else:
        der = decode_base64(stripped, what="CSR")
    return load_csr_der(der), der


def load_csr_der(der: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_der_x509_csr(der)
        csr.public_key()  # unsupported key algorithms raise here, not later
        _ = csr.subject.rdns
        # cryptography parses extensions and attributes lazily: any later access (the
        # policy, the store) must not be the first to meet a broken one.
        _ = list(csr.extensions), list(csr.attributes)
        _check_names(csr)
    except x509.DuplicateExtension as exc:
        raise GatewayError(ErrorKind.BAD_CSR,
                           f"the CSR requests the extension {exc.oid.dotted_string} twice") from exc
    except (ValueError, x509.InvalidVersion) as exc:
        raise GatewayError(ErrorKind.MALFORMED, f"not a valid DER PKCS#10 CSR: {_short(exc)}") from exc
    except x509.UnsupportedGeneralNameType as exc:
        raise GatewayError(ErrorKind.BAD_CSR, "the CSR has an unsupported name type") from exc
    except UnsupportedAlgorithm as exc:
        raise GatewayError(ErrorKind.UNSUPPORTED_KEY,
                           "the CSR's public key algorithm is not supported") from exc
    return csr


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
# RFC 5280 Appendix A upper bounds (ub-common-name and friends); 256 for the rest.
_UPPER_BOUNDS = {NameOID.COMMON_NAME: 64, NameOID.ORGANIZATION_NAME: 64,
                 NameOID.ORGANIZATIONAL_UNIT_NAME: 64, NameOID.LOCALITY_NAME: 128,
                 NameOID.STATE_OR_PROVINCE_NAME: 128, NameOID.SERIAL_NUMBER: 64,
                 NameOID.TITLE: 64, NameOID.EMAIL_ADDRESS: 255}
_MAX_VALUE = 256
_MAX_ATTRIBUTES = 32


def _check_names(csr: x509.CertificateSigningRequest) -> None:
    """Refuse names that read differently to different software or break RFC 5280:
    control characters (the NUL-prefix attack), over-long or too many subject
    attributes, and SANs that are not what their type says (a dNSName that is not a
    host name, non-ASCII IA5 text).  Refused, never trimmed."""
    attributes = list(csr.subject)
    if len(attributes) > _MAX_ATTRIBUTES:
        raise GatewayError(ErrorKind.BAD_CSR, f"the CSR's subject has more than "
                           f"{_MAX_ATTRIBUTES} attributes")
    for attribute in attributes:
        value = attribute.value
        if not isinstance(value, str):
            continue
        if _CONTROL.search(value):
            raise GatewayError(ErrorKind.BAD_CSR,
                               "a name in the CSR's subject contains a control character")
        bound = _UPPER_BOUNDS.get(attribute.oid, _MAX_VALUE)
        if len(value) > bound:
            raise GatewayError(ErrorKind.BAD_CSR, f"the CSR's subject {attribute.rfc4514_string()[:40]}"
                               f"... is longer than {bound} characters (RFC 5280)")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    if not len(san):
        raise GatewayError(ErrorKind.BAD_CSR, "the CSR's subjectAltName is empty (RFC 5280 "
                           "§4.2.1.6)")
    for name in san:
        if not isinstance(name, x509.DNSName | x509.RFC822Name | x509.UniformResourceIdentifier):
            continue
        text = name.value
        if not text or not text.isascii() or _CONTROL.search(text) or " " in text:
            raise GatewayError(ErrorKind.BAD_CSR, f"the CSR has an invalid subjectAltName "
                               f"{type(name).__name__} {text[:64]!r}")
        if isinstance(name, x509.DNSName) and not _is_host_name(text):
            raise GatewayError(ErrorKind.BAD_CSR,
                               f"the CSR's dNSName {text[:64]!r} is not a host name")
        if isinstance(name, x509.RFC822Name):
            local, at, domain = text.rpartition("@")
            if not (local and at and _is_host_name(domain)) or domain.startswith("*"):
                raise GatewayError(ErrorKind.BAD_CSR,
                                   f"the CSR's rfc822Name {text[:64]!r} is not a mail address")


def _is_host_name(text: str) -> bool:
    """A DNS host name (RFC 1123 labels, '_' tolerated), optionally '*.' + one."""
    labels = text.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    return (0 < len(labels) and len(text) <= 253
            and all(_DNS_LABEL.fullmatch(label) for label in labels))


def decode_base64(data: bytes, *, what: str) -> bytes:
    """Base64 with or without line breaks; strict about the alphabet."""
    compact = b"".join(data.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GatewayError(ErrorKind.MALFORMED, f"{what} is not valid base64") from exc


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
