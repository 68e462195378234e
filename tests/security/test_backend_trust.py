"""Rule 4: a remote backend is never trusted to enforce the gateway's policy.

The real server (``gatehouse up``) in front of a real OpenBao and the certsrv simulator,
driven over EST with curl as a device would.  A CSR that asks for more than a clientAuth
profile issues (CA key usages, codeSigning, anyExtendedKeyUsage, a critical
nameConstraints, the Microsoft SID extension, a private extension) is refused before any
backend is called, whichever Vault mode the profile's backend uses; the clean CSR beside
each gets exactly the profile's EKU.  A CA that issues beyond the decision (a Vault role
with its own EKU and key usage, the simulator adding a SAN, CA:TRUE, keyCertSign or the
SID) gets its certificate refused: the request fails, the audit log names the violation,
the inventory stays empty, and Vault revokes what it signed.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca_backends.vault import colon_hex
from tests.security.conftest import start_configured
from tests.support.adcs_simulator import AdcsSimulator
from tests.support.est import PASSWORD, curl, est_url
from tests.support.openbao import OpenBao
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
# Vault roles: names from the request fields; "client-only" issues what a clientAuth
# profile decides; "loose" keeps Vault's defaults (serverAuth too, more key usages).
ROLES = {
    "client-only": {"server_flag": False, "client_flag": True, "key_usage": ["DigitalSignature"]},
    "loose": {},
}
PROFILES = ("vault-client", "verbatim-client", "vault-loose", "adcs", "adcs-approval")


@dataclass
class Env:
    server: GatehouseServer
    bao: OpenBao
    sim: AdcsSimulator
    work: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    bao = OpenBao(tmp_path_factory.mktemp("bao")).start()
    sim = AdcsSimulator(tmp_path_factory.mktemp("adcs"), auth="basic").start()
    try:
        bao.setup_pki()
        common = {"key_type": "any", "max_ttl": "9600h", "allow_any_name": True,
                  "enforce_hostnames": False}
        for role, settings in ROLES.items():
            strict = {"use_csr_common_name": False, "use_csr_sans": False} if settings else {}
            bao.api("POST", f"pki/roles/{role}", {**common, **strict, **settings})

        def edit(config: dict[str, Any], _data_dir: Path) -> None:
            vault = {"type": "vault", "url": bao.url, "mount": "pki", "ca_cert": str(bao.ca_pem),
                     "auth": {"method": "token", "token_env": "TRUST_BAO_TOKEN"}}
            config["backends"].update({
                "openbao": vault,
                "openbao-verbatim": {**vault, "mode": "sign-verbatim"},
                "adcs": {"type": "adcs", "url": sim.url, "template": "WebServer",
                         "ca_cert": str(sim.root_pem), "poll_interval": 1,
                         "auth": {"method": "basic", "username": sim.username,
                                  "password_env": "TRUST_ADCS_PASSWORD"}},
            })
            default = config["profiles"][config.get("default_profile", "default")]
            client = {**default, "extended_key_usage": ["clientAuth"]}
            config["profiles"].update({
                "vault-client": {**client, "backend": "openbao", "template": "client-only"},
                "verbatim-client": {**client, "backend": "openbao-verbatim"},
                "vault-loose": {**client, "backend": "openbao", "template": "loose"},
                "adcs": {**default, "backend": "adcs"},
                "adcs-approval": {**default, "backend": "adcs", "template": "ManagerApproval"},
            })
            config["retry"] = {"poll_interval": "1s", "base_delay": "1s", "max_delay": "2s"}

        secrets = {"TRUST_BAO_TOKEN": bao.root_token, "TRUST_ADCS_PASSWORD": sim.password}

        def setup(data_dir: Path) -> None:
            for profile in PROFILES:
                run_cli(["user", "add", profile, "dev"], data_dir, stdin=PASSWORD + "\n",
                        env=secrets)

        server = start_configured(tmp_path_factory, "trust", edit, env=secrets, setup=setup)
        try:
            yield Env(server, bao, sim, tmp_path_factory.mktemp("est"))
        finally:
            server.stop()
    finally:
        sim.stop()
        bao.stop()


# -- helpers ------------------------------------------------------------------------------


EVIL: dict[str, tuple[x509.ExtensionType, bool]] = {
    "keyCertSign/cRLSign": (x509.KeyUsage(True, False, False, False, False, True, True, False,
                                          False), True),
    "codeSigning/OCSPSigning": (x509.ExtendedKeyUsage(
        [CLIENT_AUTH, ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.OCSP_SIGNING]), False),
    "anyExtendedKeyUsage": (x509.ExtendedKeyUsage(
        [CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), False),
    "nameConstraints": (x509.NameConstraints([x509.DNSName("example.test")], None), True),
    "Microsoft SID": (x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.311.25.2"), b"\x30\x00"), False),
    "private extension": (x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1"), b"\x0c\x04root"), False),
    "CA:TRUE": (x509.BasicConstraints(ca=True, path_length=None), True),
}


def csr_b64(work: Path, name: str, cn: str,
            extensions: tuple[tuple[x509.ExtensionType, bool], ...] = ()) -> Path:
    """A device's CSR (base64 DER, as EST carries it) with these requested extensions."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    der = builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)
    path = work / f"{name}.b64"
    path.write_bytes(base64.encodebytes(der))
    return path


def enroll(env: Env, profile: str, csr: Path) -> tuple[int, bytes]:
    status, _, body = curl("--cacert", str(env.server.root_pem), "-u", f"dev:{PASSWORD}",
                           "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{csr}",
                           est_url(env.server, "simpleenroll", profile))
    return status, body


def leaf_of(body: bytes) -> x509.Certificate:
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]


def ekus(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def query(env: Env, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(env.server.data_dir / "gatehouse.db") as db:
        return db.execute(sql, args).fetchall()


def violations(env: Env, cn: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = query(env, "SELECT serial, reason, details FROM audit_events "
                      "WHERE action = 'backend.policy_violation'")
    return [(serial, reason, json.loads(details)) for serial, reason, details in rows
            if cn in json.loads(details).get("subject", "")]


def in_inventory(env: Env, cn: str) -> bool:
    return bool(query(env, "SELECT serial FROM certificates WHERE subject LIKE ?", f"%{cn}%"))


def backend_calls(sim: AdcsSimulator) -> int:
    return sum(1 for method, path, _ in sim.seen if method == "POST" and path.endswith("certfnsh.asp"))


# -- CSRs asking for more than the decision -----------------------------------------------


@pytest.mark.parametrize("profile", ["vault-client", "verbatim-client", "adcs"])
@pytest.mark.parametrize("evil", list(EVIL))
def test_csr_extensions_beyond_the_decision_are_refused_before_the_backend(
        env: Env, profile: str, evil: str) -> None:
    cn = f"evil-{list(EVIL).index(evil)}-{profile}.example.test"
    before = backend_calls(env.sim)
    status, body = enroll(env, profile, csr_b64(env.work, cn, cn, (EVIL[evil],)))
    assert status == 403, (status, body)
    assert b"the CSR asks for" in body, body
    assert backend_calls(env.sim) == before  # the ADCS bridge never forwarded it
    assert not in_inventory(env, cn)


@pytest.mark.parametrize("profile", ["vault-client", "verbatim-client"])
def test_a_clean_csr_gets_exactly_the_profiles_eku(env: Env, profile: str) -> None:
    """The positive control, and what the attacker's CSR could have had at most."""
    cn = f"clean-{profile}.example.test"
    within = x509.ExtendedKeyUsage([CLIENT_AUTH])
    status, body = enroll(env, profile, csr_b64(env.work, cn, cn, ((within, False),)))
    assert status == 200, body
    cert = leaf_of(body)
    assert ekus(cert) == [CLIENT_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    constraints = [e.value for e in cert.extensions if isinstance(e.value, x509.BasicConstraints)]
    assert all(not c.ca for c in constraints)  # CA:FALSE or absent
    oids = {e.oid.dotted_string for e in cert.extensions}
    assert oids <= {"2.5.29.15", "2.5.29.37", "2.5.29.19", "2.5.29.14", "2.5.29.35",
                    "2.5.29.17"}, oids
    assert in_inventory(env, cn)


# -- backends issuing beyond the decision -------------------------------------------------


def test_vault_role_beyond_the_decision_is_refused_audited_and_revoked(env: Env) -> None:
    """Role ``loose`` adds serverAuth and key usages a clientAuth profile does not issue."""
    cn = "loose.example.test"
    status, body = enroll(env, "vault-loose", csr_b64(env.work, "loose", cn))
    assert status == 403, body
    assert b"does not match the policy decision" in body
    assert not in_inventory(env, cn)
    [(serial, reason, details)] = violations(env, cn)
    assert "serverAuth beyond the decision" in reason and "key usage" in reason
    assert details["backend"] == "openbao" and details["revoked"] == "yes"
    revoked = env.bao.api("GET", f"pki/cert/{colon_hex(serial)}").json()["data"]
    assert revoked["revocation_time"] > 0


@pytest.mark.parametrize(("tamper", "expected"), [
    ("extra-san", "subjectAltNames not in the decision: dns:admin.corp.example"),
    ("ca", "basicConstraints CA:TRUE"),
    ("key-cert-sign", "key usage crl_sign, key_cert_sign beyond the decision"),
    ("any-eku", "extended key usage anyExtendedKeyUsage beyond the decision"),
    ("sid", "Microsoft SID"),
    ("duplicate-extension", "the certificate cannot be read: DuplicateExtension"),
])
def test_adcs_issuing_beyond_the_decision_is_refused(env: Env, tamper: str, expected: str) -> None:
    cn = f"tampered-{tamper}.example.test"
    env.sim.tamper = {tamper}
    try:
        status, body = enroll(env, "adcs", csr_b64(env.work, cn, cn))
    finally:
        env.sim.tamper = set()
    assert status == 403, body
    assert b"does not match the policy decision" in body and b"admin.corp" not in body
    assert not in_inventory(env, cn)
    [(_, reason, details)] = violations(env, cn)
    assert expected in reason, reason
    assert details["backend"] == "adcs" and details["revoked"].startswith("no: ADCS web "
                                                                           "enrollment cannot")
    state = query(env, "SELECT r.state FROM requests r JOIN audit_events a ON a.request_id = r.id "
                       "WHERE a.action = 'backend.policy_violation' AND a.serial = ?",
                  violations(env, cn)[0][0])
    assert state == [("failed",)]


def test_a_pending_adcs_request_approved_with_a_tampered_certificate_fails(env: Env) -> None:
    """The retry worker's poll goes through the same check as a first answer."""
    cn = "approved-tampered.example.test"
    status, body = enroll(env, "adcs-approval", csr_b64(env.work, "approved", cn))
    assert status == 202, body
    [pending] = [r for r in env.sim.requests.values() if r.disposition == 5]
    env.sim.tamper = {"extra-san"}
    try:
        env.sim.approve(pending.id)
    finally:
        env.sim.tamper = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not violations(env, cn):
        time.sleep(0.5)
    [(_, reason, details)] = violations(env, cn)
    assert "dns:admin.corp.example" in reason and details["backend"] == "adcs"
    assert not in_inventory(env, cn)
    states = query(env, "SELECT state, reason FROM requests WHERE id = ?",
                   query(env, "SELECT request_id FROM audit_events WHERE action = "
                              "'backend.policy_violation' AND details LIKE ?",
                         f"%{cn}%")[0][0])
    assert states == [("failed", "the CA issued a certificate that does not match the policy "
                                 "decision; it was refused and not delivered")]


def test_adcs_behaving_issues(env: Env) -> None:
    """The positive control for the simulator: the same request, an honest CA."""
    cn = "honest.example.test"
    status, body = enroll(env, "adcs", csr_b64(env.work, "honest", cn))
    assert status == 200, body
    cert = leaf_of(body)
    assert ekus(cert) == [SERVER_AUTH]
    assert in_inventory(env, cn) and not violations(env, cn)


def test_cli_refuses_the_same_csr(env: Env) -> None:
    """``gatehouse certs issue`` (the operator's door) goes through the same checks."""
    cn = "cli-evil.example.test"
    pem = env.work / "cli-evil.pem"
    der = base64.decodebytes(csr_b64(env.work, "cli-evil", cn,
                                     (EVIL["nameConstraints"],)).read_bytes())
    pem.write_bytes(x509.load_der_x509_csr(der).public_bytes(Encoding.PEM))
    result = run_cli(["certs", "issue", "--profile", "vault-client", "--csr", str(pem)],
                     env.server.data_dir, env={"TRUST_BAO_TOKEN": env.bao.root_token,
                                               "TRUST_ADCS_PASSWORD": env.sim.password},
                     check=False)
    assert result.returncode != 0 and "nameConstraints" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
