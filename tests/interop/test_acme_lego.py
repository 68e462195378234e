"""lego (Debian) against ``gatehouse`` over real TLS: http-01, tls-alpn-01, dns-01 (exec
provider + the test DNS server), renew, revoke, EAB registration; key rollover through
certbot's ``acme`` library (lego has no rollover command)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.support.dns_server import DnsTestServer
from tests.support.server import REPO, GatehouseServer, free_port, run_cli


@dataclass
class Env:
    server: GatehouseServer
    dns: DnsTestServer
    control: Path
    http01_port: int
    tlsalpn01_port: int
    work: Path

    def directory(self, profile: str | None = None) -> str:
        path = f"/acme/{profile}/directory" if profile else "/acme/directory"
        return self.server.https_url + path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    assert shutil.which("lego"), "lego is not installed (apt-get install lego)"
    work = tmp_path_factory.mktemp("lego")
    data_dir = work / "gatehouse-data"
    run_cli(["init"], data_dir)
    config_file = data_dir / "gatehouse.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["profiles"]["partners"] = {**config["profiles"]["default"],
                                      "acme": {"eab_required": True, "challenges": ["http-01"]}}
    config_file.write_text(yaml.safe_dump(config))
    control = work / "dns.json"
    dns = DnsTestServer(control=control).start()
    http01, tlsalpn01 = free_port(), free_port()
    server = GatehouseServer(data_dir, env={
        "GATEHOUSE_ACME_HTTP01_PORT": str(http01),
        "GATEHOUSE_ACME_TLSALPN01_PORT": str(tlsalpn01),
        "GATEHOUSE_ACME_DNS_RESOLVER": dns.address,
        "GATEHOUSE_ACME_VALIDATION_ALLOW": "127.0.0.0/8,::1/128"}).start()
    yield Env(server, dns, control, http01, tlsalpn01, work)
    server.stop()
    dns.stop()


def lego(env: Env, path: str, *args: str, directory: str | None = None, email: str = "ops@example.com",
         check: bool = True, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = ["lego", "--server", directory or env.directory(), "--email", email, "--accept-tos",
               "--path", str(env.work / path), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False,
                            env={**os.environ, "LEGO_CA_CERTIFICATES": str(env.server.root_pem),
                                 **(extra_env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"lego {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n"
                             f"server log:\n{env.server.log()[-3000:]}")
    return result


def cert_of(env: Env, path: str, name: str) -> x509.Certificate:
    pem = (env.work / path / "certificates" / f"{name}.crt").read_bytes()
    return x509.load_pem_x509_certificate(pem)


def status(env: Env, cert: x509.Certificate) -> str:
    out = run_cli(["certs", "show", format(cert.serial_number, "x")], env.server.data_dir).stdout
    return json.loads(out[:out.index("-----BEGIN")])["status"]


def test_http01_run_renew_revoke(env: Env) -> None:
    http = ["--http", "--http.port", f"127.0.0.1:{env.http01_port}"]
    lego(env, "http", "--domains", "lego.gatehouse.test", "--domains", "127.0.0.1", *http, "run")
    first = cert_of(env, "http", "lego.gatehouse.test")
    lego(env, "http", "--domains", "lego.gatehouse.test", "--domains", "127.0.0.1", *http,
         "renew", "--days", "100000", "--no-random-sleep")
    second = cert_of(env, "http", "lego.gatehouse.test")
    assert second.serial_number != first.serial_number
    lego(env, "http", "--domains", "lego.gatehouse.test", "revoke", "--keep", "--reason", "4")
    assert status(env, second) == "revoked"
    assert status(env, first) == "valid"


def test_tls_alpn01(env: Env) -> None:
    lego(env, "tls", "--domains", "alpn.gatehouse.test", "--tls", "--tls.port",
         f"127.0.0.1:{env.tlsalpn01_port}", "run")
    cert = cert_of(env, "tls", "alpn.gatehouse.test")
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["alpn.gatehouse.test"]


def test_dns01_exec_wildcard(env: Env) -> None:
    hook = env.work / "hook.sh"
    hook.write_text(f"#!/bin/sh\ncd {REPO} && exec {sys.executable} -m tests.support.dns_server "
                    f'{env.control} "$1" "$2" "$3"\n')
    hook.chmod(0o755)
    lego(env, "dns", "--domains", "*.wild.gatehouse.test", "--domains", "wild.gatehouse.test",
         "--dns", "exec", "--dns.resolvers", env.dns.address, "--dns.disable-cp", "run",
         extra_env={"EXEC_PATH": str(hook), "EXEC_SEQUENCE_INTERVAL": "1",
                    "EXEC_POLLING_INTERVAL": "1"})
    cert = cert_of(env, "dns", "_.wild.gatehouse.test")
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"*.wild.gatehouse.test",
                                                             "wild.gatehouse.test"}


def test_eab_registration(env: Env) -> None:
    http = ["--http", "--http.port", f"127.0.0.1:{env.http01_port}"]
    directory = env.directory("partners")
    refused = lego(env, "eab-none", "--domains", "eab.gatehouse.test", *http, "run",
                   directory=directory, check=False)
    assert refused.returncode != 0
    assert "External Account Binding" in refused.stdout + refused.stderr
    out = run_cli(["eab", "create", "partners"], env.server.data_dir).stdout
    fields = dict(line.split(": ", 1) for line in out.strip().splitlines())
    eab = ["--eab", "--kid", fields["kid"], "--hmac", fields["hmac_key"]]
    lego(env, "eab", *eab, "--domains", "eab.gatehouse.test", *http, "run", directory=directory)
    assert cert_of(env, "eab", "eab.gatehouse.test")
    # One key binds one account: a second registration with it is refused.
    again = lego(env, "eab-again", *eab, "--domains", "eab.gatehouse.test", *http, "run",
                 directory=directory, email="other@example.com", check=False)
    assert again.returncode != 0 and "unauthorized" in again.stdout + again.stderr
    listing = run_cli(["eab", "list"], env.server.data_dir).stdout
    assert fields["kid"] in listing and "used" in listing


def test_key_rollover_with_acme_library(env: Env) -> None:
    import josepy as jose
    from acme import client, messages
    from acme import jws as acme_jws
    from cryptography.hazmat.primitives.asymmetric import ec

    old_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    new_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(old_key, alg=jose.ES256, verify_ssl=str(env.server.root_pem))
    directory = client.ClientV2.get_directory(env.directory(), net)
    acme = client.ClientV2(directory, net)
    account = acme.new_account(messages.NewRegistration.from_data(
        email="roll@example.com", terms_of_service_agreed=True))
    url = directory["keyChange"]
    inner = acme_jws.JWS.sign(
        json.dumps({"account": account.uri,
                    "oldKey": old_key.public_key().to_partial_json()}).encode(),
        key=new_key, alg=jose.ES256, nonce=None, url=url)
    response = net.post(url, inner)
    assert response.status_code == 200
    # The new key now signs for the account; the old key no longer finds it.
    net.key = new_key
    assert acme.query_registration(account).body.status == "valid"
    old_net = client.ClientNetwork(old_key, alg=jose.ES256, verify_ssl=str(env.server.root_pem))
    old = client.ClientV2(client.ClientV2.get_directory(env.directory(), old_net), old_net)
    with pytest.raises(Exception, match=r"accountDoesNotExist|does not exist"):
        old.new_account(messages.NewRegistration(only_return_existing=True))
