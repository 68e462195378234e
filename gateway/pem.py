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
        _refuse_control_characters(csr)
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


def _refuse_control_characters(csr: x509.CertificateSigningRequest) -> None:
    """A NUL or other control character in a name makes it read differently to
    different software (the null-prefix attack): such a CSR is refused, never trimmed."""
    texts = [a.value for a in csr.subject if isinstance(a.value, str)]
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        texts += [n.value for n in san if isinstance(n, x509.DNSName | x509.RFC822Name
                                                      | x509.UniformResourceIdentifier)]
    if any(_CONTROL.search(text) for text in texts):
        raise GatewayError(ErrorKind.BAD_CSR, "a name in the CSR contains a control character")


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
