"""The CA port: the certificates a profile's CA publishes (RFC 7030 §4.1 /cacerts,
RFC 8894 §4.2 GetCACert and §4.7 GetNextCACert), and the gateway's own issuing CAs."""

from __future__ import annotations

from typing import Protocol

from cryptography import x509

from ca_backends.base import RevocationSigner, Rollover
from gateway.backends import Backends
from gateway.config import GatehouseConfig
from gateway.errors import ErrorKind, GatewayError


class CaCertificates(Protocol):
    async def chain_for(self, profile: str) -> list[x509.Certificate]:
        """The profile's issuing chain, issuing CA first; a CA that cannot answer raises
        GatewayError(BACKEND_UNAVAILABLE) (clients get a generic text)."""

    def has_successor(self, profile: str) -> bool:
        """Whether the profile's CA can announce a successor (GetNextCACert)."""

    def next_chain_for(self, profile: str) -> list[x509.Certificate] | None:
        """The announced successor chain, or None when no rollover is pending."""

    def issuing_certificates(self) -> list[x509.Certificate]:
        """Every issuing CA certificate the gateway holds keys for (chain completion of
        client certificates, never trust anchors)."""


class BackendCaCertificates:
    def __init__(self, config: GatehouseConfig, backends: Backends) -> None:
        self._config = config
        self._backends = backends

    def _backend_name(self, profile: str) -> str:
        return self._config.profiles[profile].backend

    async def chain_for(self, profile: str) -> list[x509.Certificate]:
        name = self._backend_name(profile)
        try:
            return list(await self._backends.get(name).ca_chain())
        except GatewayError as exc:
            if exc.kind is ErrorKind.BACKEND_UNAVAILABLE:
                raise
            raise _unavailable(name, exc.detail, exc.retry_after) from exc
        except (OSError, ValueError) as exc:
            raise _unavailable(name, str(exc), None) from exc

    def has_successor(self, profile: str) -> bool:
        return isinstance(self._backends.get(self._backend_name(profile)), Rollover)

    def next_chain_for(self, profile: str) -> list[x509.Certificate] | None:
        backend = self._backends.get(self._backend_name(profile))
        return backend.next_ca_chain() if isinstance(backend, Rollover) else None

    def issuing_certificates(self) -> list[x509.Certificate]:
        out: list[x509.Certificate] = []
        for _name, backend in self._backends.items():
            if isinstance(backend, RevocationSigner):
                out.extend(issuer.certificate for issuer in backend.issuers())
        return out


def _unavailable(backend: str, detail: str, retry_after: int | None) -> GatewayError:
    # The detail (URLs, hosts) is for the log: client_detail() withholds it.
    return GatewayError(ErrorKind.BACKEND_UNAVAILABLE,
                        f"CA chain of backend {backend!r}: {detail}", retry_after=retry_after)
