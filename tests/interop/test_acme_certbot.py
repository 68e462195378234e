"""certbot (PyPI) against ``gatehouse up``'s default ACME directory over real TLS.

http-01 through certbot's standalone server, dns-01 (with a wildcard) through --manual
hooks writing TXT records into the test's DNS server, renew and revoke.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.dns_server import DnsTestServer
from tests.support.server import REPO, GatehouseServer, free_port, run_cli


@dataclass
class Env:
    server: GatehouseServer
    dns: DnsTestServer
    control: Path
    http01_port: int
    work: Path

    @property
    def directory(self) -> str:
        return f"{self.server.https_url}/acme/directory"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    assert shutil.which("certbot"), "certbot is not installed (pip install certbot)"
    work = tmp_path_factory.mktemp("certbot")
    control = work / "dns.json"
    dns = DnsTestServer(control=control).start()
    http01 = free_port()
    server = GatehouseServer(work / "gatehouse-data", env={
        "GATEHOUSE_ACME_HTTP01_PORT": str(http01),
        "GATEHOUSE_ACME_TLSALPN01_PORT": str(free_port()),
        "GATEHOUSE_ACME_DNS_RESOLVER": dns.address,
        "GATEHOUSE_ACME_VALIDATION_ALLOW": "127.0.0.0/8,::1/128"}).start()
    yield Env(server, dns, control, http01, work)
    server.stop()
    dns.stop()


def certbot(env: Env, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    state = env.work / "certbot"
    command = ["certbot", *args, "--config-dir", str(state / "config"), "--work-dir",
               str(state / "work"), "--logs-dir", str(state / "logs"), "--non-interactive"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False,
                            env={**os.environ, "REQUESTS_CA_BUNDLE": str(env.server.root_pem)})
    if check and result.returncode != 0:
        raise AssertionError(f"certbot {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n"
                             f"server log:\n{env.server.log()[-3000:]}")
    return result


def live_cert(env: Env, name: str) -> x509.Certificate:
    path = env.work / "certbot" / "config" / "live" / name / "cert.pem"
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName))


def cert_status(env: Env, serial: int) -> str:
    out = run_cli(["certs", "show", format(serial, "x")], env.server.data_dir).stdout
    return "revoked" if '"status": "revoked"' in out else "valid"


def test_http01_get_renew_revoke(env: Env) -> None:
    common = ["--server", env.directory, "--agree-tos", "-m", "ops@example.com"]
    certbot(env, "certonly", "--standalone", "--http-01-address", "127.0.0.1",
            "--http-01-port", str(env.http01_port), "-d", "web.gatehouse.test",
            "-d", "www.gatehouse.test", *common)
    first = live_cert(env, "web.gatehouse.test")
    assert sans(first) == {"web.gatehouse.test", "www.gatehouse.test"}
    chain = (env.work / "certbot/config/live/web.gatehouse.test/fullchain.pem").read_text()
    assert chain.count("BEGIN CERTIFICATE") >= 2
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(env.server.root_pem),
                             "-untrusted", str(env.work / "certbot/config/live/web.gatehouse.test/chain.pem"),
                             str(env.work / "certbot/config/live/web.gatehouse.test/cert.pem")],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    certbot(env, "renew", "--force-renewal", "--cert-name", "web.gatehouse.test",
            "--no-random-sleep-on-renew")
    second = live_cert(env, "web.gatehouse.test")
    assert second.serial_number != first.serial_number
    assert sans(second) == sans(first)

    certbot(env, "revoke", "--cert-name", "web.gatehouse.test", "--no-delete-after-revoke",
            "--reason", "superseded")
    assert cert_status(env, second.serial_number) == "revoked"
    assert cert_status(env, first.serial_number) == "valid"


def test_dns01_wildcard_through_manual_hooks(env: Env) -> None:
    hook = env.work / "hook.sh"
    hook.write_text("#!/bin/sh\n"
                    f"cd {REPO} && exec {sys.executable} -m tests.support.dns_server {env.control} "
                    '"$1" "_acme-challenge.$CERTBOT_DOMAIN" "$CERTBOT_VALIDATION"\n')
    hook.chmod(0o755)
    certbot(env, "certonly", "--manual", "--preferred-challenges", "dns-01",
            "--manual-auth-hook", f"{hook} present", "--manual-cleanup-hook", f"{hook} cleanup",
            "-d", "dns.gatehouse.test", "-d", "*.dns.gatehouse.test",
            "--server", env.directory, "--agree-tos", "-m", "ops@example.com")
    cert = live_cert(env, "dns.gatehouse.test")
    assert sans(cert) == {"dns.gatehouse.test", "*.dns.gatehouse.test"}
    assert ("_acme-challenge.dns.gatehouse.test", "TXT") in env.dns.queries


def test_failed_validation_is_reported(env: Env) -> None:
    # Nothing serves http-01 on the validation port: the order must end invalid, with the
    # connection problem shown to the user, and nothing issued.
    result = certbot(env, "certonly", "--manual", "--preferred-challenges", "http-01",
                     "--manual-auth-hook", "true", "-d", "nothing.gatehouse.test",
                     "--server", env.directory, "--agree-tos", "-m", "ops@example.com",
                     check=False)
    assert result.returncode != 0
    assert "connection" in (result.stdout + result.stderr).lower()
    assert not (env.work / "certbot/config/live/nothing.gatehouse.test").exists()
