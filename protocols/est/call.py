"""What every EST handler shares: the request (`Call`), the answer (`Reply`) and the
enrollment port (`EnrollPort`) that serverkeygen (RFC 7030 §4.4) and fullcmc (§4.3) use.

The router wires each operation to its handler; handlers depend on this module, never on
each other, so the imports point one way: router → enroll/serverkeygen/fullcmc → call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509

from gateway.errors import ErrorKind, GatewayError
from gateway.model import EnrollmentResult, Operation, Principal
from gateway.pem import load_csr_der
from gateway.protocol_settings.est import EstProfileSettings
from gateway.runtime import Gateway
from protocols.est.auth import Authenticator, Credentials
from protocols.est.signer import ServerSigner

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass(frozen=True, slots=True)
class Call:
    """One EST request as the handlers see it."""

    scope: Any
    headers: dict[bytes, bytes]
    body: bytes
    profile: str
    label: str
    settings: EstProfileSettings

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None


def load_csr(der: bytes) -> x509.CertificateSigningRequest:
    """gateway.pem.load_csr_der, plus the one parser error it lets through."""
    try:
        return load_csr_der(der)
    except x509.InvalidVersion as exc:  # not a ValueError in cryptography
        raise GatewayError(ErrorKind.MALFORMED,
                           f"not a valid DER PKCS#10 CSR: version {exc.parsed_version}") from exc


class EnrollPort(Protocol):
    """The enrollment steps serverkeygen and fullcmc reuse (implemented by enroll.Enroller)."""

    @property
    def auth(self) -> Authenticator: ...

    @property
    def gateway(self) -> Gateway: ...

    @property
    def signer(self) -> ServerSigner: ...

    def read_csr(self, call: Call) -> tuple[x509.CertificateSigningRequest, bytes]: ...

    def check_channel_binding(self, call: Call, creds: Credentials,
                              csr: x509.CertificateSigningRequest) -> None: ...

    async def submit(self, call: Call, operation: Operation,
                     csr: x509.CertificateSigningRequest, csr_der: bytes,
                     principal: Principal, renewal_of: str | None = None,
                     idempotent: bool = True) -> EnrollmentResult: ...
