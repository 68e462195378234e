"""Configuration of an ``internal`` backend entry (validated before start-up)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ca_backends.base import BackendConfig


class InternalCaConfig(BackendConfig):
    """The gateway's own root and issuing CA, keys encrypted at rest in ``directory``.

    Relative paths are relative to the data directory.  The passphrase comes from the
    environment variable ``passphrase_env`` when it is set, else from ``passphrase_file``.
    Durations ``crl_validity`` and ``ocsp_validity`` are in seconds: the distance from
    thisUpdate to nextUpdate in the CRLs (RFC 5280 §5.1.2.5) and OCSP answers
    (RFC 6960 §4.2.2.1) the gateway has this backend sign.
    """

    type: Literal["internal"]
    directory: str = "ca"
    passphrase_env: str = "GATEHOUSE_CA_PASSPHRASE"  # noqa: S105 - a variable name
    passphrase_file: str = "ca/passphrase"  # noqa: S105 - a path, not a secret
    key_type: Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"] = "ec-p256"
    root_validity_days: int = Field(default=3650, ge=1, le=36500)
    issuer_validity_days: int = Field(default=1825, ge=1, le=36500)
    crl_validity: int = Field(default=86400, ge=60)
    ocsp_validity: int = Field(default=3600, ge=60)
    subject_prefix: str = Field(default="Gatehouse", min_length=1, max_length=40)
    organization: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _issuer_within_root(self) -> InternalCaConfig:
        if self.issuer_validity_days > self.root_validity_days:
            raise ValueError("issuer_validity_days is longer than root_validity_days")
        return self
