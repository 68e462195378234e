"""ACME settings: a profile's ``acme:`` section and the top-level ``acme:`` section.

Defaults make ``gatehouse up``'s default profile serve ACME at ``/acme/directory`` with
http-01, dns-01 and tls-alpn-01 and no External Account Binding, like pebble.  The
validation ports and DNS resolver may be overridden from the environment
(``GATEHOUSE_ACME_HTTP01_PORT``, ``GATEHOUSE_ACME_TLSALPN01_PORT``,
``GATEHOUSE_ACME_DNS_RESOLVER``) so tests can validate against loopback ports.

Validation never connects to loopback, private, link-local or other non-public addresses
unless ``validation_allow`` (``GATEHOUSE_ACME_VALIDATION_ALLOW``, comma-separated CIDRs)
opens them, for labs and tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.durations import parse_duration

ChallengeType = Literal["http-01", "dns-01", "tls-alpn-01"]
ALL_CHALLENGES: tuple[ChallengeType, ...] = ("http-01", "dns-01", "tls-alpn-01")


def _seconds(value: Any) -> dt.timedelta:
    return parse_duration(value)


class AcmeProfileSettings(BaseModel):
    """Per profile: how this profile is offered over ACME (RFC 8555 §7.1.1 ``meta``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    challenges: list[ChallengeType] = list(ALL_CHALLENGES)
    eab_required: bool = False  # RFC 8555 §7.3.4
    caa: bool = False  # RFC 8659 check at validation time
    caa_identities: list[str] = []  # domains that CAA "issue" records must name
    allow_validity_request: bool = False  # accept notBefore/notAfter in newOrder
    terms_of_service: str | None = None
    website: str | None = None
    # ACME profiles draft: name → description.  Each name is a Gatehouse profile an order
    # may select with its "profile" field; empty: only this profile itself is offered.
    profiles: dict[str, str] = {}
    orders_per_account: int = Field(default=3000, ge=1)  # per rate_window
    orders_per_identifier: int = Field(default=1000, ge=1)  # per rate_window
    rate_window: dt.timedelta = dt.timedelta(hours=1)
    max_identifiers: int = Field(default=100, ge=1)

    @field_validator("rate_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> dt.timedelta:
        return _seconds(value)


def _resolver_ok(value: str | None) -> str | None:
    if value is None or value in ("", "system"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return value


class AcmeServerSettings(BaseModel):
    """Process-wide ACME settings: where validation connects and how long things live."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    http01_port: int = Field(default=80, ge=1, le=65535)
    tlsalpn01_port: int = Field(default=443, ge=1, le=65535)
    dns_resolver: str | None = None  # HOST:PORT; None: the system resolver
    # CIDRs validation may reach although they are not publicly routable (labs, tests).
    validation_allow: tuple[str, ...] = ()
    validation_timeout: dt.timedelta = dt.timedelta(seconds=10)  # one attempt
    validation_attempts: int = Field(default=3, ge=1, le=20)
    validation_retry_delay: dt.timedelta = dt.timedelta(seconds=2)
    nonce_lifetime: dt.timedelta = dt.timedelta(minutes=30)
    order_lifetime: dt.timedelta = dt.timedelta(days=7)
    authorization_lifetime: dt.timedelta = dt.timedelta(days=7)

    @field_validator("validation_timeout", "validation_retry_delay", "nonce_lifetime",
                     "order_lifetime", "authorization_lifetime", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> dt.timedelta:
        return _seconds(value)

    @field_validator("dns_resolver")
    @classmethod
    def _resolver(cls, value: str | None) -> str | None:
        return _resolver_ok(value)

    @field_validator("validation_allow", mode="before")
    @classmethod
    def _allow(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value or ())
        out = []
        for item in items:
            text = item.strip() if isinstance(item, str) else ""
            if not text and isinstance(item, str):
                continue
            try:
                out.append(str(ipaddress.ip_network(text, strict=False)))
            except ValueError:
                raise ValueError(f"validation_allow: {item!r} is not a CIDR") from None
        return tuple(out)

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, data: Any) -> Any:
        """Environment overrides win over the YAML (tests point validation at loopback)."""
        data = dict(data) if isinstance(data, dict) else {}
        env = {"GATEHOUSE_ACME_HTTP01_PORT": "http01_port",
               "GATEHOUSE_ACME_TLSALPN01_PORT": "tlsalpn01_port",
               "GATEHOUSE_ACME_DNS_RESOLVER": "dns_resolver",
               "GATEHOUSE_ACME_VALIDATION_ALLOW": "validation_allow"}
        for variable, key in env.items():
            value = os.environ.get(variable)
            if value:
                data[key] = value
        return data
