"""EST settings (RFC 7030): a profile's ``est:`` section and the top-level ``est:`` section.

Defaults make ``gatehouse up``'s default profile serve EST at ``/.well-known/est/`` with
HTTP Basic users (``gatehouse user add``); re-enrollment with the certificate the profile
issued; enrollment with a client certificate only from the profile's own anchors.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Which credentials an EST client must present (RFC 7030 §3.2.3, §3.3.2).
EstAuth = Literal["any", "password", "client-cert", "both"]
ServerKeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]
SanKind = Literal["dns", "ip", "email", "uri"]

_LABEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class CsrAttrsSettings(BaseModel):
    """What ``/csrattrs`` tells clients to put in their CSR (RFC 7030 §4.5, RFC 8951 §4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Key the CSR should carry, e.g. "ec-p256" or "rsa-2048"; None: say nothing.
    key_type: ServerKeyType | None = None
    # subjectAltName kinds the CSR must request (advertised as the SAN extension OID).
    required_sans: list[SanKind] = []
    # Further attribute OIDs (dotted) to advertise, e.g. "2.5.4.5" (serialNumber).
    extra_oids: list[str] = []

    @field_validator("extra_oids")
    @classmethod
    def _dotted(cls, oids: list[str]) -> list[str]:
        for oid in oids:
            if not re.fullmatch(r"[0-2](\.(0|[1-9]\d*))+", oid):
                raise ValueError(f"{oid!r} is not a dotted OID")
        return oids


class EstProfileSettings(BaseModel):
    """Per profile: how this profile is offered over EST."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    # Path label: /.well-known/est/<label>/...; default: the profile name.  The
    # configuration's default profile is also served without a label.
    label: str | None = None
    # any: HTTP Basic or a client certificate; both: HTTP Basic and a client certificate.
    auth: EstAuth = "any"
    serverkeygen_key_type: ServerKeyType = "ec-p256"
    csrattrs: CsrAttrsSettings = CsrAttrsSettings()
    # RFC 7030 §3.5: the CSR's challengePassword must carry the TLS 1.2 tls-unique value.
    channel_binding: bool = False
    retry_after: int = Field(default=60, ge=1, le=86400)  # seconds, for 202 answers
    # PEM files (relative to the data directory) of the CAs whose certificates
    # authenticate simpleenroll, serverkeygen and fullcmc on this profile, e.g. a
    # manufacturer's IDevID CA.  Empty: no client-certificate enrollment.  The gateway's
    # own CAs are trusted here only if listed (docs/est.md, docs/security.md rule 2).
    client_cert_anchors: list[str] = []
    # Which names a certificate-authenticated client may request: "match" (each CN and
    # subjectAltName must be one of the client certificate's CN / SAN values) or "any".
    client_cert_names: Literal["match", "any"] = "match"
    # simplereenroll accepts only a certificate issued under this profile (current,
    # unrevoked, same names, RFC 7030 §4.2.2).  True: it also accepts a certificate from
    # ``client_cert_anchors``, treated as a first enrollment under ``client_cert_names``.
    reenroll_from_anchors: bool = False

    @field_validator("label")
    @classmethod
    def _label_ok(cls, label: str | None) -> str | None:
        if label is not None and (not _LABEL.match(label) or label in _OPERATIONS):
            raise ValueError(f"EST label {label!r}: letters, digits, '-', '_' and not an "
                             "operation name")
        return label


_OPERATIONS = frozenset({"cacerts", "simpleenroll", "simplereenroll", "serverkeygen",
                         "csrattrs", "fullcmc"})


class EstServerSettings(BaseModel):
    """Process-wide EST settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Extra CA certificates (PEM files) named to TLS clients as acceptable issuers in the
    # handshake's CertificateRequest, beside every profile's ``est.client_cert_anchors``
    # and the internal CAs' roots.  Names only: it authenticates nobody; trust is per
    # profile (``profiles.<name>.est.client_cert_anchors``).
    client_cert_anchors: list[str] = []
    # Reverse proxies (addresses or CIDR networks) allowed to pass the client
    # certificate in ``client_cert_header`` (URL-encoded PEM, as nginx's
    # $ssl_client_escaped_cert).  The header is ignored from anyone else.
    trusted_proxies: list[str] = []
    client_cert_header: str = "x-ssl-client-cert"
    # Successful HTTP Basic checks are remembered in memory for this many seconds, keyed
    # by an HMAC of (profile, user, password) under a per-process random key.
    password_cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    # Pre-shared AES key-encryption keys for server-generated keys requested with
    # DecryptKeyIdentifier (RFC 7030 §4.4.1.1): key identifier (hex) -> name of the
    # environment variable holding the key (hex, 16/24/32 bytes).  Keys never live here.
    serverkeygen_keks: dict[str, str] = {}

    @field_validator("serverkeygen_keks")
    @classmethod
    def _kek_ids(cls, values: dict[str, str]) -> dict[str, str]:
        for key_id, env in values.items():
            try:
                bytes.fromhex(key_id)
            except ValueError:
                raise ValueError(f"KEK identifier {key_id!r} is not hex") from None
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
                raise ValueError(f"{env!r} is not an environment variable name")
        return values

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted proxy {value!r}: {exc}") from None
        return values

    @field_validator("client_cert_header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise ValueError(f"{value!r} is not an HTTP header name")
        return value.lower()
