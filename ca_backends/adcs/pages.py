"""Reading what certsrv answers: result pages, certnew.cer/.p7b bodies, certcarc.asp.

Matching follows what deployed clients match (the PyPI ``certsrv`` library, Certipy,
cert-manager's adcs-issuer), so the bridge breaks no sooner than they do: the request id
from ``certnew.cer?ReqID=N&`` (issued) or ``Your Request Id is N.`` (pending), the reason
from ``The disposition message is "…"`` (denied) or the ``Disposition message:`` /
``LastStatus:`` entries of the error page.  Text matching needs an English CA; the ReqID
link does not.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

_ISSUED = re.compile(r"certnew\.cer\?ReqID=(\d+)&")
_PENDING_ID = re.compile(r"Your Request Id is (\d+)\.")
_DENIED = re.compile(r'The disposition message is "([^"]*)"')
_DISPOSITION_MESSAGE = re.compile(r"Disposition message:[^\t]*\t\t([^\r\n]*)")
_LAST_STATUS = re.compile(r"LastStatus:[^\t]*\t\t([^\r\n]*)")
_RENEWALS = re.compile(r"var nRenewals=(\d+);")
_HRESULT = re.compile(r"0x([0-9a-fA-F]{1,8})\b")
_ARMOUR = re.compile(rb"-----(BEGIN|END) [A-Z0-9 #]+-----")

# LastStatus codes that mean "the CA is not there right now", not "your request is bad".
TRANSIENT_STATUS = {
    0x800706BA,  # RPC_S_SERVER_UNAVAILABLE: the CA service is stopped
    0x800706BE,  # RPC_S_CALL_FAILED
    0x80070015,  # ERROR_NOT_READY
    0x8007045B,  # ERROR_SHUTDOWN_IN_PROGRESS
}
PROPERTY_EMPTY = 0x80094004  # CERTSRV_E_PROPERTY_EMPTY: no such request


class Disposition(StrEnum):
    ISSUED = "issued"
    PENDING = "pending"
    DENIED = "denied"
    ERROR = "error"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ResultPage:
    """The outcome a certfnsh.asp (or certnew.cer error) page shows."""

    disposition: Disposition
    request_id: int | None = None
    message: str = ""
    last_status: int | None = None
    last_status_text: str = ""

    @property
    def transient(self) -> bool:
        return self.last_status in TRANSIENT_STATUS


def parse_result(page: str) -> ResultPage:
    """Classify the page certfnsh.asp answered to ``Mode=newreq`` or ``chkpnd``."""
    issued = _ISSUED.search(page)
    if issued:
        return ResultPage(Disposition.ISSUED, int(issued.group(1)))
    if "Certificate Pending" in page:
        pending = _PENDING_ID.search(page)
        return ResultPage(Disposition.PENDING, int(pending.group(1)) if pending else None)
    denied = _DENIED.search(page)
    if denied or "Certificate Request Denied" in page:
        request_id = _PENDING_ID.search(page)
        message = _clean(denied.group(1)) if denied else "denied (no disposition message)"
        return ResultPage(Disposition.DENIED, int(request_id.group(1)) if request_id else None,
                          message)
    return parse_error(page)


def parse_error(page: str) -> ResultPage:
    """The error page (also what certnew.cer answers for a request that is not issued)."""
    message = _DISPOSITION_MESSAGE.search(page)
    status = _LAST_STATUS.search(page)
    if message is None and status is None:
        return ResultPage(Disposition.UNKNOWN)
    text = _clean(message.group(1)) if message else ""
    status_text = _clean(status.group(1)) if status else ""
    code = _HRESULT.search(status_text)
    last_status = int(code.group(1), 16) if code else None
    if text == "(none)":
        text = ""
    if text.startswith("Taken Under Submission") or text.startswith("Under Submission"):
        return ResultPage(Disposition.PENDING, None, text, last_status, status_text)
    if text.startswith("Denied by") or last_status == 0x80094014:
        return ResultPage(Disposition.DENIED, None, text or status_text, last_status, status_text)
    return ResultPage(Disposition.ERROR, None, text, last_status, status_text)


def parse_renewals(page: str) -> int:
    """``nRenewals`` of certcarc.asp: the index of the CA's newest certificate."""
    found = _RENEWALS.search(page)
    if found is None:
        raise ValueError("certcarc.asp has no nRenewals")
    return int(found.group(1))


def _armoured_or_der(body: bytes) -> bytes:
    """DER from a body that is DER, PEM, or base64 under the wrong armour (the p7b quirk)."""
    if body.lstrip().startswith(b"0"):  # a DER SEQUENCE starts with 0x30 ('0')
        return body
    text = _ARMOUR.sub(b"", body)
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError("neither DER nor base64") from exc


def read_certificate(body: bytes) -> x509.Certificate:
    """certnew.cer with ``Enc=b64`` (PEM, CRLF) or ``Enc=bin`` (DER)."""
    return x509.load_der_x509_certificate(_armoured_or_der(body))


def read_pkcs7(body: bytes) -> list[x509.Certificate]:
    """certnew.p7b: a certs-only PKCS#7 (RFC 2315 §9.1), DER or base64 under any armour."""
    return list(pkcs7.load_der_pkcs7_certificates(_armoured_or_der(body)))


def order_chain(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Certificates of a PKCS#7 bag (unordered by RFC) as a chain: lowest CA first, root last."""
    remaining = list(dict.fromkeys(certs))
    issuers = {c.issuer for c in remaining if c.issuer != c.subject}
    bottom = [c for c in remaining if c.subject not in issuers]
    chain: list[x509.Certificate] = []
    current = bottom[0] if bottom else (remaining[0] if remaining else None)
    while current is not None and current not in chain:
        chain.append(current)
        if current.issuer == current.subject:
            break
        current = next((c for c in remaining if c.subject == current.issuer and c not in chain),
                       None)
    chain.extend(c for c in remaining if c not in chain)
    return chain


def _clean(text: str) -> str:
    return re.sub(r"[\r\n\t]+", " ", html.unescape(re.sub(r"<[^>]+>", "", text))).strip()


__all__ = ["Disposition", "ResultPage", "order_chain", "parse_error", "parse_renewals",
           "parse_result", "read_certificate", "read_pkcs7"]
