"""The HashiCorp Vault / OpenBao PKI backend (same ``/v1/<mount>/`` API for both).

Backend type ``vault`` (ca_backends.registry).  Issues through ``sign/<role>`` (the default: the decided
CN, SANs and notAfter are passed as request fields and Vault copies no CSR extension; the
role's ``key_usage``/``ext_key_usage`` flags shape the rest, and a role must not take names
from the CSR: ``use_csr_common_name=false``, ``use_csr_sans=false``) or
``sign-verbatim[/<role>]`` (Vault copies the CSR's subject and every requested extension,
so the gateway first refuses a CSR whose names differ from the decision or whose
extensions go beyond it, and sends the decided key usage and EKU), optionally under
``issuer/<ref>/`` on multi-issuer mounts.  Whatever Vault returns, the pipeline checks it
against the decision before it is recorded (gateway/issuance_check.py).  Revokes by
serial (colon hex), serves the mount's CA chain and passes its CRL (RFC 5280 §5, DER)
through.

Error mapping (each one a decision; see docs/backends.md):

- 4xx with ``errors`` (role refusal, unknown role, bad CSR) → ``BackendRejected`` carrying
  Vault's reason: the request fails with that reason, as a policy denial at the CA.
- 403 → log in again once and repeat; a second 403 → ``BackendUnavailable`` saying the
  gateway's Vault credentials lack permission: it is the operator's to fix, so the request
  stays retryable (and ``/readyz`` shows the backend unhealthy) instead of failing.
- connection errors, timeouts, 429, 5xx, sealed → ``BackendUnavailable`` (retryable).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import Field, model_validator

from ca_backends.base import (
    BackendConfig,
    BackendContext,
    BackendRejected,
    BackendUnavailable,
    Health,
    Unsupported,
)
from ca_backends.common import issued_certificate
from ca_backends.vault.auth import CertAuth, VaultAuthConfig, VaultAuthError, VaultLogin
from gateway.issuance_check import names_mismatch, requested_extension_problems
from gateway.model import (
    Decision,
    EnrollmentRequest,
    Identifier,
    IdentifierType,
    IssuedCertificate,
    Pending,
    RevocationReason,
    san_identifiers,
)

log = logging.getLogger("gatehouse.backends.vault")

# cryptography KeyUsage attribute names → Vault's key_usage names (x509.KeyUsage Go names).
_KEY_USAGE = {
    "digital_signature": "DigitalSignature", "content_commitment": "ContentCommitment",
    "key_encipherment": "KeyEncipherment", "data_encipherment": "DataEncipherment",
    "key_agreement": "KeyAgreement", "key_cert_sign": "CertSign", "crl_sign": "CRLSign",
}


class VaultConfig(BackendConfig):
    """One Vault / OpenBao PKI mount.  Relative file paths are relative to the data dir."""

    type: Literal["vault"]
    url: str = Field(pattern=r"^https?://")
    mount: str = "pki"
    role: str | None = None  # default role; a profile's ``template`` overrides it
    issuer_ref: str | None = None  # multi-issuer mounts: issuer name or id
    namespace: str | None = None  # Vault Enterprise / OpenBao namespaces
    mode: Literal["sign", "sign-verbatim"] = "sign"
    # decided: send the policy's notAfter (Vault then ignores the role's ttl/max_ttl, and
    # only the CA's own expiry limits it); role: send none and let the role's ttl decide.
    validity: Literal["decided", "role"] = "decided"
    auth: VaultAuthConfig
    ca_cert: str | None = None  # PEM bundle to verify Vault's TLS certificate; None: system
    timeout: float = Field(default=10.0, gt=0, le=300)  # seconds per HTTP call
    # http:// sends the Vault token, every CSR and certificate in clear: refused unless
    # this is set (labs; logged as a WARNING at start).
    allow_insecure_http: bool = False

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> VaultConfig:
        if self.url.lower().startswith("http://") and not self.allow_insecure_http:
            raise ValueError("url: a Vault at http:// would get the token and every request "
                             "in clear; use https:// (with ca_cert), or set "
                             "allow_insecure_http: true for a lab")
        return self


def _path(config: VaultConfig, data_dir: Path, value: str) -> str:
    path = Path(value)
    return str(path if path.is_absolute() else data_dir / path)


def _tls_context(config: VaultConfig, data_dir: Path) -> ssl.SSLContext:
    if config.ca_cert:
        context = ssl.create_default_context(cafile=_path(config, data_dir, config.ca_cert))
    else:
        context = ssl.create_default_context()
    if isinstance(config.auth, CertAuth):
        context.load_cert_chain(_path(config, data_dir, config.auth.client_cert),
                                _path(config, data_dir, config.auth.client_key))
    return context


class VaultBackend:
    """A CaBackend over Vault's HTTP API (httpx, one connection pool per backend)."""

    def __init__(self, name: str, config: VaultConfig, data_dir: Path,
                 *, transport: httpx.AsyncBaseTransport | None = None,
                 environ: Mapping[str, str] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._config = config
        headers = {"X-Vault-Request": "true"}
        if config.namespace:
            headers["X-Vault-Namespace"] = config.namespace
        verify: ssl.SSLContext | bool = True
        if config.url.startswith("https://"):
            verify = _tls_context(config, data_dir)
        self._http = httpx.AsyncClient(base_url=config.url.rstrip("/") + "/v1/", headers=headers,
                                       timeout=config.timeout, verify=verify, transport=transport)
        self.login = VaultLogin(config.auth, data_dir, self._send, environ=environ,
                                monotonic=monotonic)

    # -- HTTP ----------------------------------------------------------------------------

    async def _send(self, method: str, path: str, body: dict[str, Any] | None,
                    token: str | None) -> tuple[int, dict[str, Any]]:
        """One HTTP exchange; transport failures become BackendUnavailable."""
        headers = {"X-Vault-Token": token} if token else {}
        try:
            response = await self._http.request(method, path, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise BackendUnavailable(f"Vault at {self._config.url} timed out "
                                     f"({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"cannot reach Vault at {self._config.url}: "
                                     f"{exc or type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise BackendUnavailable(
                f"Vault answered HTTP {response.status_code}: {_errors(response) or 'no detail'}",
                retry_after=_retry_after(response))
        try:
            decoded = response.json() if response.content else {}
        except ValueError:
            decoded = {}
        return response.status_code, decoded if isinstance(decoded, dict) else {}

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        """An authenticated call; a 403 re-authenticates once, then fails clearly."""
        for attempt in (1, 2):
            token = await self.login.token()
            status, decoded = await self._send(method, path, body, token)
            if status == 403:
                await self.login.invalidate(token)
                if attempt == 1:
                    continue
                raise VaultAuthError(
                    f"Vault denied the gateway's {self.login.method} credentials on {path} "
                    f"(403 permission denied) after a fresh login: grant the gateway's Vault "
                    f"policy access to this path")
            if 200 <= status < 300:
                return decoded
            reasons = _decoded_errors(decoded) or f"HTTP {status}"
            raise BackendRejected(f"Vault refused: {reasons}")
        raise AssertionError("unreachable")

    def _mount_path(self, suffix: str) -> str:
        prefix = self._config.mount.strip("/") + "/"
        if self._config.issuer_ref:
            prefix += f"issuer/{self._config.issuer_ref}/"
        return prefix + suffix

    # -- CaBackend -------------------------------------------------------------------------

    async def issue(self, request: EnrollmentRequest, decision: Decision
                    ) -> IssuedCertificate | Pending:
        """Sign per the configured mode; see the module docstring for the error mapping."""
        role = decision.template or self._config.role
        csr_pem = request.csr.public_bytes(Encoding.PEM).decode("ascii")
        body: dict[str, Any] = {"csr": csr_pem, "format": "pem"}
        if decision.not_after is not None and self._config.validity == "decided":
            body["not_after"] = decision.not_after.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self._config.mode == "sign":
            if not role:
                raise BackendRejected(f"backend {self.name!r} has no Vault role: set 'role' or the "
                                      f"profile's 'template'")
            body.update(_sign_fields(decision))
            path = self._mount_path(f"sign/{role}")
        else:
            _check_verbatim(request.csr, decision)
            problems = requested_extension_problems(request.csr, decision.key_usage,
                                                    decision.extended_key_usage)
            if problems:  # Vault would copy them into the certificate
                raise BackendRejected("; ".join(problems))
            body["key_usage"] = sorted(_KEY_USAGE[u] for u in decision.key_usage if u in _KEY_USAGE)
            body["ext_key_usage_oids"] = list(decision.extended_key_usage)
            path = self._mount_path("sign-verbatim" + (f"/{role}" if role else ""))
        data = (await self._call("POST", path, body)).get("data") or {}
        return self._issued(data)

    def _issued(self, data: dict[str, Any]) -> IssuedCertificate:
        try:
            leaf = x509.load_pem_x509_certificate(str(data["certificate"]).encode())
            chain_pems = data.get("ca_chain") or [data.get("issuing_ca")]
            chain = [x509.load_pem_x509_certificate(str(p).encode()) for p in chain_pems if p]
        except (KeyError, ValueError) as exc:
            raise BackendUnavailable("Vault answered without a readable certificate") from exc
        chain = [c for c in chain if c != leaf]
        return issued_certificate(leaf, chain, backend=self.name,
                                  backend_ref=str(data.get("serial_number") or "") or None)

    async def poll(self, backend_ref: str) -> IssuedCertificate | Pending:
        """Never needed: Vault answers a signing request at once."""
        raise Unsupported("Vault never answers 'pending'")

    async def revoke(self, serial: str, reason: RevocationReason) -> None:
        """``POST <mount>/revoke`` by serial; Vault's API takes no reason code (RFC 5280
        §5.3.1), so its CRL lists the certificate as unspecified."""
        await self._call("POST", f"{self._config.mount.strip('/')}/revoke",
                         {"serial_number": colon_hex(serial)})

    async def ca_chain(self) -> list[x509.Certificate]:
        """The issuer and its chain from ``issuer/<ref|default>/json``, issuing CA first."""
        ref = self._config.issuer_ref or "default"
        data = (await self._call("GET", f"{self._config.mount.strip('/')}/issuer/{ref}/json")
                ).get("data") or {}
        pems = [data.get("certificate"), *(data.get("ca_chain") or [])]
        out: list[x509.Certificate] = []
        for pem in pems:
            if not pem:
                continue
            for cert in x509.load_pem_x509_certificates(str(pem).encode()):
                if cert not in out:
                    out.append(cert)
        if not out:
            raise BackendUnavailable("Vault answered no CA certificate")
        return out

    async def crl(self) -> bytes | None:
        """The issuer's current CRL in DER (an unauthenticated endpoint), passed through."""
        ref = self._config.issuer_ref or "default"
        path = f"{self._config.mount.strip('/')}/issuer/{ref}/crl/der"
        try:
            response = await self._http.get(path)
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"cannot reach Vault at {self._config.url}: "
                                     f"{exc or type(exc).__name__}") from exc
        if response.status_code != 200:
            raise BackendUnavailable(f"Vault answered HTTP {response.status_code} for {path}")
        return response.content

    async def health(self) -> Health:
        """``sys/health`` (sealed, standby, version), then the gateway's credentials."""
        try:
            status, body = await self._send("GET", "sys/health?standbyok=true&perfstandbyok=true",
                                            None, None)
            if status != 200:
                return Health(False, f"Vault health answered HTTP {status}")
            await self.login.token()
        except BackendUnavailable as exc:
            return Health(False, exc.detail)
        return Health(True, f"Vault/OpenBao {body.get('version', '?')} unsealed; "
                            f"{self.login.method} login works")

    async def close(self) -> None:
        await self._http.aclose()


# -- helpers ---------------------------------------------------------------------------


def _sign_fields(decision: Decision) -> dict[str, Any]:
    """The decided names as ``sign/<role>`` request fields (roles may ignore them)."""
    fields: dict[str, Any] = {}
    cns = decision.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns:
        fields["common_name"] = str(cns[0].value)
        fields["exclude_cn_from_sans"] = True  # the decision's SANs are complete
    by_type: dict[IdentifierType, list[str]] = {}
    for ident in decision.sans:
        by_type.setdefault(ident.type, []).append(ident.value)
    alt = by_type.get(IdentifierType.DNS, []) + by_type.get(IdentifierType.EMAIL, [])
    if alt:
        fields["alt_names"] = ",".join(alt)
    if by_type.get(IdentifierType.IP):
        fields["ip_sans"] = ",".join(by_type[IdentifierType.IP])
    if by_type.get(IdentifierType.URI):
        fields["uri_sans"] = ",".join(by_type[IdentifierType.URI])
    return fields


def _check_verbatim(csr: x509.CertificateSigningRequest, decision: Decision) -> None:
    """sign-verbatim keeps the CSR's subject and SANs: refuse when the policy decided others."""
    mismatch = names_mismatch(csr, decision, signer="sign-verbatim")
    if mismatch:
        raise BackendRejected(mismatch)


def identifiers_of_csr(csr: x509.CertificateSigningRequest) -> list[Identifier]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, ValueError):
        return []
    return san_identifiers(ext.value)


def colon_hex(serial: str) -> str:
    """'1a2b3' → '01:a2:b3', the form Vault stores serials under."""
    digits = serial.lower().replace(":", "").lstrip("0") or "0"
    if len(digits) % 2:
        digits = "0" + digits
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))


def _decoded_errors(decoded: dict[str, Any]) -> str:
    errors = decoded.get("errors")
    if isinstance(errors, list):
        return "; ".join(str(e) for e in errors if str(e).strip())
    return ""


def _errors(response: httpx.Response) -> str:
    try:
        decoded = response.json()
    except ValueError:
        return ""
    return _decoded_errors(decoded) if isinstance(decoded, dict) else ""


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else None


def build_vault(name: str, config: VaultConfig, context: BackendContext) -> VaultBackend:
    if not config.url.lower().startswith("https://"):
        log.warning("Vault backend over plain HTTP (allow_insecure_http): the token and "
                    "requests travel in clear", extra={"backend": name})
    return VaultBackend(name, config, Path(context.data_dir))


__all__ = ["VaultBackend", "VaultConfig", "build_vault", "colon_hex"]
