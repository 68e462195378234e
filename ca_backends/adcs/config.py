"""Configuration of an ``adcs`` backend entry: the certsrv URL, template, credentials."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ca_backends.base import BackendConfig


class _AuthModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PasswordAuth(_AuthModel):
    """A Windows account: ``DOMAIN\\user`` or ``user@domain``; the password from file or env."""

    username: str = Field(min_length=1)
    password_file: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> _PasswordAuth:
        if bool(self.password_file) == bool(self.password_env):
            raise ValueError("set exactly one of password_file, password_env")
        return self


class BasicAuth(_PasswordAuth):
    """HTTP Basic (must be enabled on the IIS site); only ever sent over TLS."""

    method: Literal["basic"]


class NtlmAuth(_PasswordAuth):
    """NTLM, with channel binding to the TLS certificate (Extended Protection)."""

    method: Literal["ntlm"]


class NegotiateAuth(_PasswordAuth):
    """SPNEGO: Kerberos when a KDC and gssapi are available, else NTLM inside SPNEGO."""

    method: Literal["negotiate"]
    service: str = "HTTP"  # SPN service class; the host part is the URL's host


class ClientCertAuth(_AuthModel):
    """A TLS client certificate mapped to an account by IIS."""

    method: Literal["cert"]
    client_cert: str
    client_key: str


AdcsAuthConfig = Annotated[BasicAuth | NtlmAuth | NegotiateAuth | ClientCertAuth,
                           Field(discriminator="method")]


class AdcsConfig(BackendConfig):
    """One ADCS CA through its Web Enrollment pages.  Relative paths: data-dir relative.

    ``template`` is the default certificate template (a profile's ``template`` overrides
    it); ``attributes`` are extra ``Name:Value`` request attributes sent with every request
    (``san:`` attributes only matter on CAs with EDITF_ATTRIBUTESUBJECTALTNAME2).
    ``poll_interval`` is how long the gateway waits before asking again about a request
    that waits for a CA manager's approval.
    """

    type: Literal["adcs"]
    url: str = Field(pattern=r"^https://")  # the server, e.g. https://ca01.corp.example
    template: str | None = None
    attributes: list[str] = []
    auth: AdcsAuthConfig
    ca_cert: str | None = None  # PEM bundle to verify the IIS TLS certificate; None: system
    timeout: float = Field(default=30.0, gt=0, le=300)
    poll_interval: int = Field(default=300, ge=1, le=86400)

    @model_validator(mode="after")
    def _attributes_are_name_value(self) -> AdcsConfig:
        for line in self.attributes:
            name, sep, _ = line.partition(":")
            if not sep or not name.strip() or "\n" in line or "\r" in line:
                raise ValueError(f"attribute {line!r} is not one 'Name:Value' line")
        return self
