"""Shared set-up for the EST e2e tests: a configured `gatehouse up`, curl and a test CA.

(Named test_est_* to stay within the EST test files; it holds no tests.)
"""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.pki import PrivateKey, key_pem, make_key
from tests.support.server import GatehouseServer, run_cli

PASSWORD = secrets.token_urlsafe(12)  # a fresh EST user password per test run


@dataclass
class TestCa:
    """A small CA made by the test (extra client-cert anchor, or an untrusted one)."""

    __test__ = False
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str) -> TestCa:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=30))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return cls(name, key, cert)

    def pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)

    def issue(self, cn: str, *, key: PrivateKey | None = None, days: float = 30,
              expired: bool = False) -> tuple[x509.Certificate, PrivateKey]:
        key = key or make_key()
        now = dt.datetime.now(dt.UTC)
        start = now - dt.timedelta(days=10) if expired else now - dt.timedelta(minutes=5)
        end = now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=days)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert, key


def start_est_server(data_dir: Path, extra_anchor: TestCa, *, workers: int = 1,
                     trusted_proxy: bool = True, rollover: bool = False,
                     kek: tuple[str, str] | None = None) -> GatehouseServer:
    """`gatehouse init`, add EST profiles and settings to the YAML, then `gatehouse up`."""
    run_cli(["init"], data_dir)
    path = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(path.read_text())
    (data_dir / "extra-anchor.pem").write_bytes(extra_anchor.pem())
    config["est"] = {}
    if trusted_proxy:
        config["est"]["trusted_proxies"] = ["127.0.0.2/32"]
    env = {}
    if kek is not None:  # (key id hex, key hex): the key goes to the server's environment
        config["est"]["serverkeygen_keks"] = {kek[0]: "EST_TEST_KEK"}
        env["EST_TEST_KEK"] = kek[1]
    default = config["profiles"]["default"]
    # Client certificates from the test's device CA authenticate enrollment on the
    # default profile; the gateway's own certificates only re-enroll (security rule 2).
    default["est"] = {**(default.get("est") or {}), "client_cert_anchors": ["extra-anchor.pem"]}
    config["profiles"]["iot"] = {**default, "approval": "manual",
                                 "est": {"label": "iot", "csrattrs": {
                                     "key_type": "ec-p256", "required_sans": ["dns"]}}}
    config["profiles"]["bound"] = {**default, "est": {"label": "bound",
                                                      "channel_binding": True}}
    config["profiles"]["strict"] = {**default, "est": {"label": "strict", "auth": "both",
                                                       "client_cert_anchors": ["extra-anchor.pem"]}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    for profile in ("default", "iot", "bound", "strict"):
        run_cli(["user", "add", profile, "dev"], data_dir, stdin=PASSWORD + "\n")
    if rollover:
        run_cli(["ca", "rollover", "--activate-in", "7d"], data_dir)
    return GatehouseServer(data_dir, workers=workers, env=env).start()


def curl(*args: str, cwd: Path | None = None) -> tuple[int, dict[str, str], bytes]:
    """Run curl; return (HTTP status, lower-case headers, body)."""
    result = subprocess.run(["curl", "-sS", "-D", "-", *args], capture_output=True,
                            cwd=cwd, timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"curl {' '.join(args)} failed: {result.stderr.decode()}")
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def est_url(server: GatehouseServer, operation: str, label: str | None = None) -> str:
    middle = f"{label}/" if label else ""
    return f"{server.https_url}/.well-known/est/{middle}{operation}"


def openssl_csr(directory: Path, name: str, cn: str, *, curve: str = "P-256",
                key: str | None = None, extra: Sequence[str] = ()) -> Path:
    """A device's `openssl req`: key (new unless given) and base64 DER CSR file."""
    key_path = directory / (key or f"{name}.key")
    args = ["openssl", "req", "-new", "-subj", f"/CN={cn}",
            "-addext", f"subjectAltName=DNS:{cn}", "-outform", "DER", "-out",
            str(directory / f"{name}.der"), *extra]
    if key is None:
        args += ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}", "-nodes",
                 "-keyout", str(key_path)]
    else:
        args += ["-key", str(key_path)]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    b64 = subprocess.run(["base64", str(directory / f"{name}.der")], check=True,
                         capture_output=True, timeout=60).stdout
    (directory / f"{name}.b64").write_bytes(b64)
    return directory / f"{name}.b64"


def pkcs7_to_pem(body: bytes, directory: Path, name: str) -> Path:
    """`base64 -d | openssl pkcs7 -inform DER -print_certs` as a device does."""
    der = subprocess.run(["base64", "-d"], input=body, check=True, capture_output=True,
                         timeout=60).stdout
    pem = subprocess.run(["openssl", "pkcs7", "-inform", "DER", "-print_certs"], input=der,
                         check=True, capture_output=True, timeout=60).stdout
    out = directory / f"{name}.pem"
    out.write_bytes(pem)
    return out


def write_key(directory: Path, name: str, key: PrivateKey) -> Path:
    path = directory / f"{name}.key"
    path.write_bytes(key_pem(key))
    return path
