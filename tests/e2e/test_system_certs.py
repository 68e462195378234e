"""Gatehouse's own certificates (TLS server, SCEP RA) go through the pipeline (issue #11):
in the inventory, audited, revocable, renewable; no protocol door enrolls on their
built-in profiles."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine, select

from gateway.store.tables import AuditEventRow
from tests.support.server import GatehouseServer, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    gh = GatehouseServer(tmp_path_factory.mktemp("system") / "data").start()
    yield gh
    gh.stop()


def _serial(path: Path) -> str:
    return format(x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number, "x")


def _listed(server: GatehouseServer) -> dict[str, tuple[str, str]]:
    """serial → (status, profile) from ``gatehouse certs list``."""
    out = run_cli(["certs", "list"], server.data_dir).stdout.splitlines()[1:]
    return {line.split()[0]: (line.split()[1], line.split()[4]) for line in out}


def _issued_audit(server: GatehouseServer) -> dict[str, str]:
    """serial → profile of every certificate.issued audit event."""
    engine = create_engine(f"sqlite:///{server.data_dir / 'gatehouse.db'}")
    try:
        with engine.connect() as db:
            rows = db.execute(select(AuditEventRow.serial, AuditEventRow.profile)
                              .where(AuditEventRow.action == "certificate.issued")).all()
    finally:
        engine.dispose()
    return {serial: profile for serial, profile in rows}


def _csr(tmp_path: Path, cn: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
           .sign(key, hashes.SHA256()))
    path = tmp_path / f"{cn}.csr"
    path.write_bytes(csr.public_bytes(Encoding.PEM))
    return path


def _ocsp_status(server: GatehouseServer, cert_path: Path) -> ocsp.OCSPCertStatus:
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    issuer = x509.load_pem_x509_certificates(
        (server.data_dir / "tls" / "server.pem").read_bytes())[1]
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    encoded = base64.b64encode(request.public_bytes(Encoding.DER)).decode()
    answer = httpx.get(f"{server.http_url}/ocsp/internal/{encoded}")
    assert answer.status_code == 200
    return ocsp.load_der_ocsp_response(answer.content).certificate_status


def _served_serial(server: GatehouseServer) -> int:
    der = ssl.get_server_certificate(("127.0.0.1", server.https_port))
    return x509.load_pem_x509_certificate(der.encode()).serial_number


def test_tls_and_ra_certificates_are_in_the_inventory_and_audited(
        server: GatehouseServer) -> None:
    tls = _serial(server.data_dir / "tls" / "server.pem")
    ra = _serial(server.data_dir / "scep" / "default" / "ra.pem")
    listed = _listed(server)
    assert listed[tls] == ("valid", "_system-tls")
    assert listed[ra] == ("valid", "_system-ra")
    assert _served_serial(server) == int(tls, 16)  # the listener serves that certificate
    audited = _issued_audit(server)
    assert audited[tls] == "_system-tls" and audited[ra] == "_system-ra"


def test_no_door_enrolls_on_the_system_profiles(server: GatehouseServer,
                                                tmp_path: Path) -> None:
    trust = ssl.create_default_context(cafile=str(server.root_pem))
    # SCEP: the default profile's endpoint answers; none exists for a system profile.
    assert httpx.get(f"{server.http_url}/scep/default?operation=GetCACaps").status_code == 200
    for name in ("_system-ra", "_system-tls"):
        refused = httpx.post(f"{server.http_url}/scep/{name}?operation=PKIOperation",
                             content=b"\x30\x00")
        assert refused.status_code == 404
        assert httpx.get(f"{server.http_url}/scep/{name}?operation=GetCACert"
                         ).status_code == 404
    # ACME: the default profile's directory, none for a system profile.
    assert httpx.get(f"{server.https_url}/acme/default/directory",
                     verify=trust).status_code == 200
    for name in ("_system-ra", "_system-tls"):
        assert httpx.get(f"{server.https_url}/acme/{name}/directory",
                         verify=trust).status_code == 404
    # EST: a password user enrolls on the default label, not on a system profile's.
    run_cli(["user", "add", "default", "sysuser"], server.data_dir, stdin="correct horse 1\n")
    csr = x509.load_pem_x509_csr(_csr(tmp_path, "est.example.test").read_bytes())
    body = base64.b64encode(csr.public_bytes(Encoding.DER))
    headers = {"content-type": "application/pkcs10"}
    auth = ("sysuser", "correct horse 1")
    ok = httpx.post(f"{server.https_url}/.well-known/est/simpleenroll", content=body,
                    headers=headers, auth=auth, verify=trust)
    assert ok.status_code == 200, ok.text
    for name in ("_system-ra", "_system-tls"):
        refused = httpx.post(f"{server.https_url}/.well-known/est/{name}/simpleenroll",
                             content=body, headers=headers, auth=auth, verify=trust)
        assert refused.status_code == 404, refused.text
    # The operator's doors (CLI, admin API) are refused by the policy: only Gatehouse
    # itself enrolls on a system profile.
    allowed = run_cli(["certs", "issue", "--profile", "default", "--csr",
                       str(_csr(tmp_path, "cli.example.test"))], server.data_dir)
    assert "BEGIN CERTIFICATE" in allowed.stdout
    for name in ("_system-ra", "_system-tls"):
        refused_cli = run_cli(["certs", "issue", "--profile", name, "--csr",
                               str(_csr(tmp_path, "evil.example.test"))], server.data_dir,
                              check=False)
        assert refused_cli.returncode != 0 and "unknown profile" in refused_cli.stderr
        assert "BEGIN CERTIFICATE" not in refused_cli.stdout
    assert not any(profile.startswith("_system") and serial not in {
        _serial(server.data_dir / "tls" / "server.pem"),
        _serial(server.data_dir / "scep" / "default" / "ra.pem")}
        for serial, (_status, profile) in _listed(server).items())


def test_revoking_the_ra_and_tls_certificates(server: GatehouseServer) -> None:
    for path in (server.data_dir / "scep" / "default" / "ra.pem",
                 server.data_dir / "tls" / "server.pem"):
        serial = _serial(path)
        assert _ocsp_status(server, path) is ocsp.OCSPCertStatus.GOOD
        run_cli(["certs", "revoke", serial, "--reason", "superseded"], server.data_dir)
        assert _listed(server)[serial][0] == "revoked"
        assert _ocsp_status(server, path) is ocsp.OCSPCertStatus.REVOKED
        crl = x509.load_pem_x509_crl(run_cli(["crl"], server.data_dir).stdout.encode())
        assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def test_renew_commands_issue_new_certificates_through_the_pipeline(
        server: GatehouseServer) -> None:
    ra_path = server.data_dir / "scep" / "default" / "ra.pem"
    tls_path = server.data_dir / "tls" / "server.pem"
    old_ra, old_tls = _serial(ra_path), _serial(tls_path)
    old_ra_key = (server.data_dir / "scep" / "default" / "ra.key").read_bytes()
    old_tls_key = (server.data_dir / "tls" / "server.key").read_bytes()

    run_cli(["scep", "ra", "renew", "default"], server.data_dir)
    run_cli(["tls", "renew"], server.data_dir)

    new_ra, new_tls = _serial(ra_path), _serial(tls_path)
    assert new_ra != old_ra and new_tls != old_tls
    assert (server.data_dir / "scep" / "default" / "ra.key").read_bytes() != old_ra_key
    assert (server.data_dir / "tls" / "server.key").read_bytes() != old_tls_key
    listed = _listed(server)
    assert listed[new_ra] == ("valid", "_system-ra")
    assert listed[new_tls] == ("valid", "_system-tls")
    audited = _issued_audit(server)
    assert new_ra in audited and new_tls in audited
    shown = run_cli(["certs", "show", new_ra], server.data_dir).stdout
    assert f'"replaces": "{old_ra}"' in shown
    assert f'"replaced_by": "{new_ra}"' in run_cli(["certs", "show", old_ra],
                                                   server.data_dir).stdout
    assert f'"replaces": "{old_tls}"' in run_cli(["certs", "show", new_tls],
                                                 server.data_dir).stdout
    # A running server reads the files at start: after a restart it serves the new ones.
    assert _served_serial(server) == int(old_tls, 16)
    server.stop()
    server.start()
    assert _served_serial(server) == int(new_tls, 16)
    ca_ra = httpx.get(f"{server.http_url}/scep?operation=GetCACert")
    assert ca_ra.status_code == 200
    new_ra_der = x509.load_pem_x509_certificate(ra_path.read_bytes()).public_bytes(Encoding.DER)
    assert new_ra_der in ca_ra.content
