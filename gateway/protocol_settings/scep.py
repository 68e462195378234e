"""SCEP settings: a profile's ``scep:`` section and the top-level ``scep:`` section.

The defaults make ``gatehouse up``'s default profile serve SCEP at ``/scep`` with one-time
(dynamic) challenge passwords and an RA certificate issued by the internal CA.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ChallengeMode(StrEnum):
    """How a PKCSReq proves it may enroll (RFC 8894 §2.3, challengePassword)."""

    DYNAMIC = "dynamic"  # one-time challenges from 'gatehouse challenge create' / admin API
    STATIC = "static"  # one shared secret per profile, stored hashed or read from env
    WEBHOOK = "webhook"  # the gateway asks a URL (Intune / Jamf style validation)
    NONE = "none"  # no challenge: only sensible with approval: manual


class ScepProfileSettings(BaseModel):
    """Per profile: how this profile is offered over SCEP."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    # URL segment: /scep/<path>; default: the profile's name.  The default profile also
    # answers at /scep and /cgi-bin/pkiclient.exe.
    path: str | None = None
    challenge: ChallengeMode = ChallengeMode.DYNAMIC
    # Static mode: a hash from 'gatehouse challenge hash' (scrypt), or the name of an
    # environment variable holding the challenge in clear.
    static_challenge_hash: str | None = None
    static_challenge_env: str | None = None
    # Webhook mode: POSTed JSON with the CSR's details; 2xx with {"allow": true} approves.
    # https only unless webhook_allow_http (labs: the challenge would travel in clear).
    webhook_url: str | None = None
    webhook_timeout: float = Field(default=10.0, gt=0, le=120)
    # Name of the environment variable holding the key that signs every call
    # (X-Gatehouse-Signature: t=<unix>,v1=<hex HMAC-SHA256 over "<t>." + body>).
    webhook_secret_env: str | None = None
    # PEM bundle that verifies the webhook's TLS certificate (data-dir relative); None:
    # the system's trust store.
    webhook_ca_cert: str | None = None
    webhook_allow_http: bool = False
    # Legacy switch for old clients: accept requests digested with SHA-1 or encrypted
    # with DES/3DES, advertise SHA-1 and DES3 in GetCACaps and answer such requests in
    # kind (logged as a WARNING at start).  Off (default): only AES and SHA-2 are
    # accepted and advertised; a legacy request gets CertRep FAILURE badAlg.
    legacy_algorithms: bool = False
    # Accept SHA-1 / DES / 3DES requests without advertising them (replies stay AES /
    # SHA-256).  Off by default; also logged as a WARNING at start.
    accept_legacy_requests: bool = False
    # GetCACert sends the RA certificate and only the issuing CA, not the root (Intune /
    # Windows expect the chain to stop at the issuer).
    issuing_ca_only: bool = False
    # RA certificate and key (PEM files, relative to the data directory).  Default:
    # scep/<profile>/ra.pem and ra.key, issued by the first internal CA at init.
    ra_cert: str | None = None
    ra_key: str | None = None
    # Refuse messages whose signingTime is further than this from our clock (failInfo
    # badTime).  None: no check (devices often enroll before their clock is set).
    max_clock_skew_seconds: int | None = Field(default=None, ge=1)
    # Lifetime of 'gatehouse challenge create' challenges when --ttl is not given.
    challenge_ttl_seconds: int = Field(default=3600, ge=60)

    @field_validator("path")
    @classmethod
    def _path_segment(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("scep.path is one URL segment: letters, digits, '-', '_', '.'")
        return value

    @model_validator(mode="after")
    def _mode_has_what_it_needs(self) -> ScepProfileSettings:
        if self.challenge is ChallengeMode.STATIC and not (
                self.static_challenge_hash or self.static_challenge_env):
            raise ValueError("challenge: static needs static_challenge_hash or "
                             "static_challenge_env")
        if self.challenge is ChallengeMode.WEBHOOK and not self.webhook_url:
            raise ValueError("challenge: webhook needs webhook_url")
        if self.challenge is ChallengeMode.WEBHOOK and not self.webhook_secret_env:
            raise ValueError("challenge: webhook needs webhook_secret_env, the environment "
                             "variable holding the key that signs each call")
        url = (self.webhook_url or "").lower()
        if url and not url.startswith("https://"):
            if not url.startswith("http://"):
                raise ValueError("webhook_url must be an https:// URL")
            if not self.webhook_allow_http:
                raise ValueError("webhook_url must be https:// (the challenge and CSR would "
                                 "travel in clear); set webhook_allow_http: true for a lab")
        if (self.ra_cert is None) != (self.ra_key is None):
            raise ValueError("ra_cert and ra_key go together")
        return self


class ScepServerSettings(BaseModel):
    """Process-wide SCEP settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Largest pkiMessage accepted (POST body or decoded GET message=); larger: HTTP 400.
    max_message_bytes: int = Field(default=64 * 1024, ge=4096, le=1024 * 1024)
