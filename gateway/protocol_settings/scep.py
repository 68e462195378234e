"""SCEP settings: a profile's ``scep:`` section and the top-level ``scep:`` section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ScepProfileSettings(BaseModel):
    """Per profile: how this profile is offered over SCEP."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True


class ScepServerSettings(BaseModel):
    """Process-wide SCEP settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
