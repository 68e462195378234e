"""EAB key storage (sealed, one account per key) and the ACME settings' env overrides."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest

from gateway.auth import eab
from gateway.errors import ConfigError
from gateway.protocol_settings.acme import AcmeServerSettings
from gateway.store.db import Database
from gateway.store.tables import CredentialRow

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def test_eab_key_sealed_usable_once(sqlite_database: Database, tmp_path: Path) -> None:
    kek = eab.load_kek(tmp_path)
    assert (tmp_path / eab.KEK_FILE).stat().st_mode & 0o777 == 0o600
    assert eab.load_kek(tmp_path) == kek  # stable across calls
    with sqlite_database.session() as session:
        kid, key_text = eab.create(session, profile="default", kek=kek, now=NOW)
    raw = base64.urlsafe_b64decode(key_text + "==")
    with sqlite_database.session() as session:
        row = session.query(CredentialRow).filter_by(name=kid).one()
        assert key_text not in str(row.attributes) and key_text not in row.secret_hash
        assert eab.lookup(session, profile="other", kid=kid, kek=kek, now=NOW) is None
        assert eab.lookup(session, profile="default", kid=kid, kek=b"x" * 32, now=NOW) is None
        found = eab.lookup(session, profile="default", kid=kid, kek=kek, now=NOW)
        assert found is not None and found.key == raw
        assert eab.bind(session, found, "acct-1")
    with sqlite_database.session() as session:
        assert eab.lookup(session, profile="default", kid=kid, kek=kek, now=NOW) is None
        assert eab.list_keys(session)[0].bound_account == "acct-1"


def test_eab_expiry(sqlite_database: Database, tmp_path: Path) -> None:
    kek = eab.load_kek(tmp_path)
    with sqlite_database.session() as session:
        kid, _ = eab.create(session, profile="default", kek=kek, now=NOW,
                            expires_at=NOW + dt.timedelta(hours=1))
        assert eab.lookup(session, profile="default", kid=kid, kek=kek,
                          now=NOW + dt.timedelta(hours=2)) is None


def test_kek_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(eab.KEK_ENV, base64.b64encode(b"k" * 32).decode())
    assert eab.load_kek(tmp_path) == b"k" * 32
    monkeypatch.setenv(eab.KEK_ENV, base64.b64encode(b"short").decode())
    with pytest.raises(ConfigError):
        eab.load_kek(tmp_path)


def test_server_settings_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_ACME_HTTP01_PORT", "5002")
    monkeypatch.setenv("GATEHOUSE_ACME_TLSALPN01_PORT", "5001")
    monkeypatch.setenv("GATEHOUSE_ACME_DNS_RESOLVER", "127.0.0.1:8053")
    settings = AcmeServerSettings.model_validate({"http01_port": 81, "validation_timeout": "3s"})
    assert (settings.http01_port, settings.tlsalpn01_port, settings.dns_resolver) == \
        (5002, 5001, "127.0.0.1:8053")
    assert settings.validation_timeout == dt.timedelta(seconds=3)
    monkeypatch.setenv("GATEHOUSE_ACME_DNS_RESOLVER", "not-a-resolver")
    with pytest.raises(ValueError, match="HOST:PORT"):
        AcmeServerSettings.model_validate({})


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEHOUSE_ACME_HTTP01_PORT", "GATEHOUSE_ACME_TLSALPN01_PORT",
                 "GATEHOUSE_ACME_DNS_RESOLVER", "GATEHOUSE_ACME_VALIDATION_ALLOW"):
        monkeypatch.delenv(name, raising=False)
    settings = AcmeServerSettings.model_validate({})
    assert (settings.http01_port, settings.tlsalpn01_port, settings.dns_resolver) == (80, 443, None)
    assert settings.validation_allow == ()  # public addresses only (issue #10 rule 7)
    settings = AcmeServerSettings.model_validate({"validation_allow": ["10.1.2.3/8"]})
    assert settings.validation_allow == ("10.0.0.0/8",)
    with pytest.raises(ValueError, match="CIDR"):
        AcmeServerSettings.model_validate({"validation_allow": ["10.0.0.0/33"]})


def test_validation_allow_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_ACME_VALIDATION_ALLOW", "127.0.0.0/8, ::1/128")
    settings = AcmeServerSettings.model_validate({"validation_allow": ["10.0.0.0/8"]})
    assert settings.validation_allow == ("127.0.0.0/8", "::1/128")
