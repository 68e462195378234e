"""Configuration: one YAML file validated by pydantic before anything starts.

Unknown keys and bad values are refused with the file, the key path and the reason
(``ConfigError``).  Secrets may come from the environment: ``GATEHOUSE_DATABASE_URL``
overrides ``database.url``; CA key passphrases are read from the env variable or file a
backend entry names.  Relative paths are relative to the data directory.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ca_backends.base import BackendConfig
from ca_backends.registry import registered
from gateway.durations import Duration
from gateway.errors import ConfigError
from gateway.model import PrincipalKind
from gateway.protocol_settings.acme import AcmeProfileSettings, AcmeServerSettings
from gateway.protocol_settings.est import EstProfileSettings, EstServerSettings
from gateway.protocol_settings.scep import ScepProfileSettings, ScepServerSettings
from gateway.x509_names import eku_oid, subject_attribute_oid


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_listen(value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return value


Listen = Annotated[str, BeforeValidator(_check_listen)]


class TlsConfig(_Model):
    cert: str = "tls/server.pem"  # the server certificate followed by its chain
    key: str = "tls/server.key"


class ServerConfig(_Model):
    https: Listen = "127.0.0.1:8443"
    http: Listen | None = "127.0.0.1:8080"
    tls: TlsConfig = TlsConfig()
    # Base URLs written into issued certificates (CRL DP, OCSP, CA issuers) and used in
    # protocol answers; default: derived from the listeners.
    public_http_url: str | None = None
    public_https_url: str | None = None
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    workers: int = Field(default=1, ge=1, le=64)


class DatabaseConfig(_Model):
    url: str = "sqlite:///gatehouse.db"
    pool_size: int = Field(default=10, ge=1)


class RetryConfig(_Model):
    """How the retry worker re-drives requests whose backend failed or answered pending."""

    max_attempts: int = Field(default=20, ge=1)
    base_delay: Duration = dt.timedelta(seconds=5)
    max_delay: Duration = dt.timedelta(minutes=15)
    lease: Duration = dt.timedelta(seconds=60)  # how long one worker owns a request
    poll_interval: Duration = dt.timedelta(seconds=2)


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = Field(default=True, alias="json")


class NameRules(_Model):
    """Allow and deny lists of patterns.

    A pattern is a glob (``*`` matches within one DNS label, ``**`` across labels),
    ``re:<regex>`` (full match), or for IP addresses a CIDR network.  Deny wins.  Globs
    and regexes ignore case.
    """

    allow: list[str] = ["**"]
    deny: list[str] = []

    @field_validator("allow", "deny")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise ValueError(f"bad regex {pattern!r}: {exc}") from exc
        return patterns


class SanRules(_Model):
    dns: NameRules = NameRules()
    ip: NameRules = NameRules()
    email: NameRules = NameRules()
    uri: NameRules = NameRules()
    max_count: int = Field(default=100, ge=0)


class SubjectRules(_Model):
    """What a CSR's subject may hold (issue #10, rule 3).

    ``allowed_attributes`` lists the attributes a subject may carry, by RFC 4514 name
    (CN, O, OU, C, ...) or dotted OID; a CSR with any other attribute is refused, never
    trimmed.  An entry is a name, or a one-key mapping from a name to value patterns
    (``{OU: {allow: [Devices], deny: []}}``); the whole field may also be one mapping
    (``{CN: null, OU: {allow: [...]}}``).  ``cn`` applies to every CN; a CN that is a DNS
    name or an IP address (and a subject emailAddress) also passes the ``sans`` rules.
    """

    cn: NameRules = NameRules()
    require_cn: bool = False
    allowed_attributes: list[str | dict[str, NameRules]] = [
        "CN", "O", "OU", "C", "ST", "L", "emailAddress", "serialNumber", "DC", "UID"]

    @field_validator("allowed_attributes", mode="before")
    @classmethod
    def _mapping_to_list(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [name if rules is None else {name: rules} for name, rules in value.items()]
        return value

    @field_validator("allowed_attributes")
    @classmethod
    def _known_attributes(cls, entries: list[str | dict[str, NameRules]]
                          ) -> list[str | dict[str, NameRules]]:
        seen: set[str] = set()
        for entry in entries:
            if isinstance(entry, dict) and len(entry) != 1:
                raise ValueError("an attribute with patterns is a one-key mapping, "
                                 "e.g. {OU: {allow: [Devices]}}")
            for name in ([entry] if isinstance(entry, str) else entry):
                oid = subject_attribute_oid(name).dotted_string
                if oid in seen:
                    raise ValueError(f"subject attribute {name!r} is listed twice")
                seen.add(oid)
        return entries

    def attribute_rules(self) -> dict[str, NameRules | None]:
        """Dotted OID → value patterns (None: any value) for each allowed attribute."""
        out: dict[str, NameRules | None] = {}
        for entry in self.allowed_attributes:
            if isinstance(entry, str):
                out[subject_attribute_oid(entry).dotted_string] = None
            else:
                for name, rules in entry.items():
                    out[subject_attribute_oid(name).dotted_string] = rules
        return out


class KeyRules(_Model):
    rsa_min_bits: int = Field(default=2048, ge=1024)
    rsa_max_bits: int = Field(default=8192, ge=2048)
    ec_curves: list[Literal["P-256", "P-384", "P-521"]] = ["P-256", "P-384"]
    ed25519: bool = True
    ed448: bool = False


class ValidityRules(_Model):
    default: Duration = dt.timedelta(days=90)
    max: Duration = dt.timedelta(days=397)
    backdate: Duration = dt.timedelta(minutes=1)  # clock skew of clients

    @model_validator(mode="after")
    def _default_within_max(self) -> ValidityRules:
        if self.default > self.max:
            raise ValueError("validity.default is longer than validity.max")
        return self


class RateLimit(_Model):
    requests: int = Field(ge=1)
    window: Duration


class RenewalRules(_Model):
    allow_subject_change: bool = False  # RFC 7030 §4.2.2: subject and SAN must match
    expired_grace: Duration = dt.timedelta(0)  # renew with a certificate this long expired


class ProfileConfig(_Model):
    backend: str
    fallback_backend: str | None = None
    template: str | None = None  # Vault role / ADCS template
    auth_methods: list[PrincipalKind] = list(PrincipalKind)
    approval: Literal["auto", "manual"] = "auto"
    keys: KeyRules = KeyRules()
    subject: SubjectRules = SubjectRules()
    sans: SanRules = SanRules()
    validity: ValidityRules = ValidityRules()
    # None: derived from the key type (digitalSignature, plus keyEncipherment for RSA).
    key_usage: list[
        Literal[
            "digital_signature", "content_commitment", "key_encipherment",
            "data_encipherment", "key_agreement",
        ]
    ] | None = None
    extended_key_usage: list[str] = ["serverAuth", "clientAuth"]
    rate_limit: RateLimit | None = None
    renewal: RenewalRules = RenewalRules()
    est: EstProfileSettings = EstProfileSettings()
    scep: ScepProfileSettings = ScepProfileSettings()
    acme: AcmeProfileSettings = AcmeProfileSettings()

    @field_validator("extended_key_usage")
    @classmethod
    def _known_eku(cls, names: list[str]) -> list[str]:
        for name in names:
            eku_oid(name)
        return names


class GatehouseConfig(_Model):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    retry: RetryConfig = RetryConfig()
    logging: LoggingConfig = LoggingConfig()
    est: EstServerSettings = EstServerSettings()
    scep: ScepServerSettings = ScepServerSettings()
    acme: AcmeServerSettings = AcmeServerSettings()
    backends: dict[str, Any]
    profiles: dict[str, ProfileConfig]
    default_profile: str = "default"

    @field_validator("backends")
    @classmethod
    def _backends_known(cls, entries: dict[str, Any]) -> dict[str, BackendConfig]:
        types = registered()
        built: dict[str, BackendConfig] = {}
        for name, entry in entries.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"backend name {name!r}: use letters, digits, '-' and '_'")
            if not isinstance(entry, dict) or "type" not in entry:
                raise ValueError(f"backend {name!r} needs a 'type'")
            kind = types.get(entry["type"])
            if kind is None:
                raise ValueError(
                    f"backend {name!r}: unknown type {entry['type']!r} "
                    f"(known: {', '.join(sorted(types))})"
                )
            try:
                built[name] = kind.config_model.model_validate(entry)
            except ValidationError as exc:
                raise ValueError(f"backend {name!r}: {_describe(exc)}") from None
        return built

    @model_validator(mode="after")
    def _references_exist(self) -> GatehouseConfig:
        for name, profile in self.profiles.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"profile name {name!r}: use letters, digits, '-' and '_'")
            if name.startswith("_system"):  # gateway.system_profiles: built-in, reserved
                raise ValueError(f"profile name {name!r}: the prefix '_system' is reserved")
            for ref in (profile.backend, profile.fallback_backend):
                if ref is not None and ref not in self.backends:
                    raise ValueError(f"profile {name!r} names unknown backend {ref!r}")
        if self.default_profile not in self.profiles:
            raise ValueError(f"default_profile {self.default_profile!r} is not a profile")
        return self

    # -- derived values -----------------------------------------------------------------

    def public_http_url(self) -> str:
        if self.server.public_http_url:
            return self.server.public_http_url.rstrip("/")
        listen = self.server.http or self.server.https
        scheme = "http" if self.server.http else "https"
        return f"{scheme}://{_url_host(listen)}"

    def public_https_url(self) -> str:
        if self.server.public_https_url:
            return self.server.public_https_url.rstrip("/")
        return f"https://{_url_host(self.server.https)}"


def _url_host(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):  # noqa: S104 - mapping a wildcard bind to a URL
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def load_config(path: Path) -> GatehouseConfig:
    """Read and validate the YAML file; raise ConfigError naming file, key and reason."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run 'gatehouse init' or 'gatehouse up')") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    database_url = os.environ.get("GATEHOUSE_DATABASE_URL")
    if database_url:
        raw.setdefault("database", {})
        if isinstance(raw["database"], dict):
            raw["database"] = {**raw["database"], "url": database_url}
    try:
        return GatehouseConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None


def data_dir_from(arg: str | None) -> Path:
    """--data-dir, else $GATEHOUSE_DATA_DIR, else ./gatehouse-data."""
    return Path(arg or os.environ.get("GATEHOUSE_DATA_DIR") or "gatehouse-data").resolve()


def config_path(data_dir: Path) -> Path:
    env = os.environ.get("GATEHOUSE_CONFIG")
    return Path(env).resolve() if env else data_dir / "gatehouse.yaml"


def resolve_path(data_dir: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else data_dir / path


def database_url(config: GatehouseConfig, data_dir: Path) -> str:
    """The SQLAlchemy URL, with a relative SQLite path made relative to the data dir."""
    url = config.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rest = url.removeprefix("sqlite:///")
        if rest and rest != ":memory:":
            return f"sqlite:///{data_dir / rest}"
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url
