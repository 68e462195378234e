"""The SCEP RA identity per profile (gateway.ra)."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.ra import NoRaIssuer, ensure_ra, ensure_ras, load_ra
from gateway.setup import initialize


class _Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def now(self) -> dt.datetime:
        return self.at


def test_init_creates_an_rsa_ra_issued_by_the_internal_ca(tmp_path: Path) -> None:
    config = initialize(tmp_path, https="127.0.0.1:1", http="127.0.0.1:2")
    key_path = tmp_path / "scep" / "default" / "ra.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    ra = ensure_ra(config, tmp_path, "default")
    assert isinstance(ra.key, rsa.RSAPrivateKey) and ra.key.key_size == 2048
    usage = ra.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert ra.certificate.issuer.rfc4514_string() == "CN=Gatehouse Issuing CA 1"
    again = ensure_ra(config, tmp_path, "default")
    assert again.der == ra.der  # loaded, not re-made
    later = _Clock(dt.datetime.now(dt.UTC) + dt.timedelta(days=710))
    renewed = ensure_ra(config, tmp_path, "default", clock=later)
    assert renewed.certificate.serial_number != ra.certificate.serial_number


def test_imported_ra_and_mismatched_files(tmp_path: Path) -> None:
    initialize(tmp_path, https="127.0.0.1:1", http="127.0.0.1:2")
    path = tmp_path / "gatehouse.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["profiles"]["imported"] = {"backend": "internal", "scep": {
        "ra_cert": "scep/default/ra.pem", "ra_key": "scep/default/ra.key"}}
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert ensure_ra(config, tmp_path, "imported").der == ensure_ra(config, tmp_path,
                                                                    "default").der
    other = tmp_path / "other.key"
    other.write_bytes((tmp_path / "tls" / "server.key").read_bytes())
    with pytest.raises(ConfigError, match="must be RSA"):
        load_ra(other, tmp_path / "scep" / "default" / "ra.pem")


def test_profile_without_an_internal_ca_is_skipped(tmp_path: Path) -> None:
    config = initialize(tmp_path / "a", https="127.0.0.1:1", http="127.0.0.1:2")
    no_ca = config.model_copy(update={"backends": {}})  # e.g. a Vault-only deployment
    with pytest.raises(NoRaIssuer, match=r"scep\.ra_cert"):
        ensure_ra(no_ca, tmp_path / "b", "default")
    ensure_ras(no_ca, tmp_path / "b")  # logged and skipped: init is not blocked
    assert not (tmp_path / "b" / "scep" / "default" / "ra.key").exists()
