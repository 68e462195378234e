"""First start: write a working default configuration, CA, TLS certificate and database.

``gatehouse init`` and ``gatehouse up`` call ``initialize``; it is idempotent: what
exists is kept (an existing CA is never overwritten).
"""

from __future__ import annotations

import hashlib
import logging
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca_backends.internal import InternalCaConfig, init_from_config
from gateway.clock import SystemClock
from gateway.config import (
    GatehouseConfig,
    config_path,
    database_url,
    load_config,
    resolve_path,
)
from gateway.store.migrate import upgrade
from gateway.system_certs import ensure_tls

log = logging.getLogger("gatehouse.setup")

DEFAULT_CONFIG = """\
# Gatehouse configuration, written by 'gatehouse {command}'.  Paths are relative to the
# data directory.  Secrets never live here: the CA key passphrase is read from
# $GATEHOUSE_CA_PASSPHRASE or ca/passphrase; the database URL may come from
# $GATEHOUSE_DATABASE_URL.
server:
  https: "{https}"          # EST, SCEP, ACME, admin over TLS
  http: {http}              # plain HTTP: SCEP, CRLs, OCSP, CA certificates
  tls:
    cert: tls/server.pem    # server certificate + issuing CA
    key: tls/server.key
  # public_http_url: http://pki.example.com      # used in CRL/OCSP/AIA URLs of certificates
  # public_https_url: https://pki.example.com
  max_body_bytes: 262144
  workers: 1

database:
  url: sqlite:///gatehouse.db   # or postgresql://user@host:5432/gatehouse

retry:
  max_attempts: 20
  base_delay: 5s
  max_delay: 15m

logging:
  level: INFO
  json: true

backends:
  internal:
    type: internal
    directory: ca             # ca/root.pem is the trust anchor to hand to clients
    key_type: {key_type}

default_profile: default

profiles:
  default:
    backend: internal
    # A development default (like pebble's): any name that passes authentication and,
    # for ACME, validation.  Real profiles restrict subject and SAN patterns.
    approval: auto
    keys:
      rsa_min_bits: 2048
      ec_curves: [P-256, P-384]
      ed25519: true
    subject:
      # Only these attributes may appear in a CSR's subject; a CSR with another one is
      # refused.  An entry may restrict values: {{OU: {{allow: [Devices]}}}}.  A CN that is
      # a DNS name or IP address must pass the sans rules below and joins the SANs.
      allowed_attributes: [CN, O, OU, C, ST, L, emailAddress, serialNumber, DC, UID]
    sans:
      dns: {{allow: ["**"]}}
      ip: {{allow: ["**"]}}
      email: {{allow: ["**"]}}
      uri: {{allow: ["**"]}}
      max_count: 100
    validity:
      default: 90d
      max: 397d
    extended_key_usage: [serverAuth, clientAuth]
"""


def write_default_config(path: Path, *, https: str, http: str | None, key_type: str,
                         command: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEFAULT_CONFIG.format(https=https, http=f'"{http}"' if http else "null",
                                          key_type=key_type, command=command), encoding="utf-8")


def initialize(data_dir: Path, *, https: str, http: str | None, key_type: str = "ec-p256",
               command: str = "init") -> GatehouseConfig:
    """Create what is missing: config, CA(s), database schema, and through the pipeline
    the TLS certificate and SCEP RA certificates (gateway.system_certs)."""
    secure_data_dir(data_dir)
    path = config_path(data_dir)
    if not path.exists():
        write_default_config(path, https=https, http=http, key_type=key_type, command=command)
    config = load_config(path)
    clock = SystemClock()
    for entry in config.backends.values():
        if not isinstance(entry, InternalCaConfig):
            continue
        directory = resolve_path(data_dir, entry.directory)
        if not (directory / "root.pem").exists():
            init_from_config(entry, data_dir, clock=clock)
    # The schema first: Gatehouse's own certificates go through the pipeline (issue #11).
    upgrade(database_url(config, data_dir))
    ensure_tls(config, data_dir, clock)  # kept when present, whoever issued it
    from gateway.ra import ensure_ras  # SCEP: one RA certificate per profile (issue 4)
    ensure_ras(config, data_dir)
    return config


def secure_data_dir(data_dir: Path) -> None:
    """Create the data directory owner-only (0700), and tighten one that is not.

    It holds the CA key passphrase, the TLS and RA keys and, with SQLite, the database
    (password hashes, requests): nothing in it is for group or others (docs/security.md,
    rule 8).  Entries an older version or an operator left group/other-accessible lose
    those bits, with one warning; the process umask (gateway.cli) keeps new files 0600.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tightened: list[str] = []
    for path in (data_dir, *data_dir.rglob("*")):
        try:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not mode & 0o077:
                continue
            path.chmod(stat.S_IMODE(mode) & ~0o077)
            tightened.append(str(path.relative_to(data_dir)))
        except OSError as exc:  # not ours (e.g. a mounted config): say so, go on
            log.warning("cannot make a data directory entry owner-only",
                        extra={"path": str(path), "error": exc.strerror})
    if tightened:
        log.warning("data directory entries were accessible to group or others; made "
                    "owner-only", extra={"data_dir": str(data_dir), "count": len(tightened),
                                         "paths": tightened[:20]})


def trust_anchor(config: GatehouseConfig, data_dir: Path) -> tuple[Path, str] | None:
    """Path and SHA-256 fingerprint of the first internal CA's root certificate."""
    for entry in config.backends.values():
        if isinstance(entry, InternalCaConfig):
            path = resolve_path(data_dir, entry.directory) / "root.pem"
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            return path, fingerprint(cert)
    return None


def fingerprint(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
