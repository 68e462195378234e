"""EST settings: a profile's ``est:`` section and the top-level ``est:`` section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EstProfileSettings(BaseModel):
    """Per profile: how this profile is offered over EST."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True


class EstServerSettings(BaseModel):
    """Process-wide EST settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
