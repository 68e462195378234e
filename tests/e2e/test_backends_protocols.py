"""One key and subject through EST (curl), SCEP (micromdm scepclient) and ACME (lego --csr),
on profiles routed to the internal CA, OpenBao and the ADCS simulator: every certificate's
chain verifies against the root of the backend its profile names."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.conftest import openssl
from tests.e2e.test_backends import adcs_sim, openbao, verify_chain  # noqa: F401 - fixtures
from tests.support.adcs_simulator import AdcsSimulator
from tests.support.dns_server import DnsTestServer
from tests.support.openbao import OpenBao
from tests.support.server import GatehouseServer, free_port, run_cli

pytestmark = pytest.mark.e2e
PASSWORD = "est-pass-123"
NAME = "cross.example.test"
PROFILES = ("internal", "vault", "adcs")


@dataclass
class Env:
    server: GatehouseServer
    roots: dict[str, Path]
    work: Path
    http01_port: int
    env: dict[str, str]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, openbao: OpenBao,  # noqa: F811
        adcs_sim: AdcsSimulator) -> Iterator[Env]:  # noqa: F811
    for tool in ("lego", "scepclient", "curl"):
        assert shutil.which(tool), f"{tool} is not installed"
    work = tmp_path_factory.mktemp("cross")
    data_dir = work / "data"
    run_cli(["init"], data_dir)
    path = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(path.read_text())
    config["backends"]["openbao"] = {
        "type": "vault", "url": openbao.url, "role": "gatehouse", "ca_cert": str(openbao.ca_pem),
        "auth": {"method": "token", "token_env": "CROSS_BAO_TOKEN"}}
    config["backends"]["adcs"] = {
        "type": "adcs", "url": adcs_sim.url, "template": "WebServer", "ca_cert": str(adcs_sim.root_pem),
        "auth": {"method": "ntlm", "username": adcs_sim.username, "password_env": "CROSS_ADCS_PW"}}
    # scepclient 2.1 sends SHA-1 + single DES, refused by default (docs/security.md rule 12).
    default = {**config["profiles"]["default"], "scep": {"accept_legacy_requests": True}}
    config["profiles"]["internal"] = {**default, "backend": "internal"}
    config["profiles"]["vault"] = {**default, "backend": "openbao"}
    config["profiles"]["adcs"] = {**default, "backend": "adcs"}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    secrets = {"CROSS_BAO_TOKEN": openbao.root_token, "CROSS_ADCS_PW": adcs_sim.password}
    for profile in PROFILES:
        run_cli(["user", "add", profile, "dev"], data_dir, stdin=PASSWORD + "\n", env=secrets)
        run_cli(["scep", "ra", profile], data_dir, env=secrets)  # the RA exists before serving
    dns = DnsTestServer().start()
    http01 = free_port()
    server = GatehouseServer(data_dir, env={
        **secrets, "GATEHOUSE_ACME_HTTP01_PORT": str(http01),
        "GATEHOUSE_ACME_TLSALPN01_PORT": str(free_port()),
        "GATEHOUSE_ACME_DNS_RESOLVER": dns.address,
        "GATEHOUSE_ACME_VALIDATION_ALLOW": "127.0.0.0/8,::1/128"}).start()
    # One key and one CSR for every protocol (RSA: scepclient only loads RSA keys).
    openssl("genrsa", "-traditional", "-out", "key.pem", "2048", cwd=work)  # PKCS#1 for scepclient
    openssl("req", "-new", "-key", "key.pem", "-subj", f"/CN={NAME}", "-addext",
            f"subjectAltName=DNS:{NAME}", "-outform", "DER", "-out", "csr.der", cwd=work)
    (work / "csr.b64").write_bytes(base64.encodebytes((work / "csr.der").read_bytes()))
    roots = {"internal": server.root_pem, "vault": openbao.root_pem, "adcs": adcs_sim.root_pem}
    yield Env(server, roots, work, http01, secrets)
    server.stop()
    dns.stop()


def _pkcs7_certs(body: bytes) -> list[x509.Certificate]:
    from cryptography.hazmat.primitives.serialization import pkcs7

    return list(pkcs7.load_der_pkcs7_certificates(base64.b64decode(body)))


def _curl(env: Env, *args: str) -> bytes:
    result = subprocess.run(["curl", "-sS", "--fail-with-body", "--cacert", str(env.server.root_pem),
                             *args], capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr + env.server.log()[-2000:].encode()
    return result.stdout


def _chain_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


@pytest.mark.parametrize("profile", PROFILES)
def test_est_enrolls_through_the_profiles_backend(env: Env, profile: str) -> None:
    base = f"{env.server.https_url}/.well-known/est/{profile}"
    leaf = _pkcs7_certs(_curl(env, "-u", f"dev:{PASSWORD}", "-H", "Content-Type: application/pkcs10",
                              "--data-binary", f"@{env.work / 'csr.b64'}", f"{base}/simpleenroll"))[0]
    cacerts = _pkcs7_certs(_curl(env, f"{base}/cacerts"))
    verify_chain(_chain_pem([leaf, *cacerts]), env.roots[profile], NAME)
    assert leaf.subject.rfc4514_string() == f"CN={NAME}"


@pytest.mark.parametrize("profile", PROFILES)
def test_scep_enrolls_through_the_profiles_backend(env: Env, profile: str, tmp_path: Path) -> None:
    shutil.copy(env.work / "key.pem", tmp_path / "key.pem")
    secret = run_cli(["challenge", "create", profile], env.server.data_dir, env=env.env).stdout.strip()
    fingerprint = run_cli(["scep", "ra", profile], env.server.data_dir, env=env.env).stdout.strip()
    result = subprocess.run(
        ["scepclient", "-server-url", f"{env.server.http_url}/scep/{profile}", "-private-key",
         "key.pem", "-certificate", "cert.pem", "-cn", NAME, "-challenge", secret,
         "-ca-fingerprint", fingerprint], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr + env.server.log()[-2000:]
    leaf = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    key = x509.load_der_x509_csr((env.work / "csr.der").read_bytes()).public_key()
    assert leaf.public_key() == key
    cacerts = _pkcs7_certs(_curl(env, f"{env.server.https_url}/.well-known/est/{profile}/cacerts"))
    store_chain = [c for c in cacerts if c.subject == leaf.issuer] + cacerts
    leaf.verify_directly_issued_by(store_chain[0])
    roots = x509.load_pem_x509_certificates(env.roots[profile].read_bytes())
    assert any(c.subject == roots[0].subject for c in cacerts) or \
        store_chain[0].issuer == roots[0].subject


@pytest.mark.parametrize("profile", PROFILES)
def test_acme_enrolls_through_the_profiles_backend(env: Env, profile: str, tmp_path: Path) -> None:
    result = subprocess.run(
        ["lego", "--server", f"{env.server.https_url}/acme/{profile}/directory", "--email",
         "ops@example.test", "--accept-tos", "--path", str(tmp_path), "--csr",
         str(env.work / "csr.der"), "--http", "--http.port", f"127.0.0.1:{env.http01_port}", "run"],
        capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "LEGO_CA_CERTIFICATES": str(env.server.root_pem)})
    assert result.returncode == 0, result.stdout + result.stderr + env.server.log()[-3000:]
    pem = (tmp_path / "certificates" / f"{NAME}.crt").read_bytes()
    verify_chain(pem, env.roots[profile], NAME)
    leaf = x509.load_pem_x509_certificates(pem)[0]
    key = x509.load_der_x509_csr((env.work / "csr.der").read_bytes()).public_key()
    assert leaf.public_key() == key
