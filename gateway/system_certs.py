"""Gatehouse's own certificates (TLS server, SCEP RA), issued through the pipeline.

Each is a CSR for a fresh key, submitted by ``SYSTEM_PRINCIPAL`` over ``Protocol.MANUAL``
on a built-in profile (gateway.system_profiles): it is decided, signed, checked against
the decision, recorded in the inventory and audited (``certificate.issued``) like any
other, so ``gatehouse certs list|revoke`` work on it.  A new one for the same purpose
names the one it replaces (``replaces`` / ``replaced_by``) when that one is in the
inventory.  Files: the key (PKCS #8, unencrypted, 0600) and the certificate are written
after the certificate is recorded; a crash in between leaves an unused certificate in
the inventory and the next start issues again.  A running server reads the files at
start: after ``gatehouse tls renew`` or ``gatehouse scep ra renew`` restart it.

The database must be migrated first (``initialize`` and ``serve`` do).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.clock import Clock
from gateway.config import GatehouseConfig, resolve_path
from gateway.errors import ConfigError, GatewayError
from gateway.model import EnrollmentRequest, IssuedCertificate, Operation, Protocol
from gateway.runtime import Gateway
from gateway.store import certificates
from gateway.system_profiles import SYSTEM_PRINCIPAL, SYSTEM_TLS, system_profiles

T = TypeVar("T")
_PEM = serialization.Encoding.PEM
_MAX_CN = 64  # ub-common-name, RFC 5280 Appendix A

SystemKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class NoSystemIssuer(ConfigError):
    """No internal CA can issue Gatehouse's own certificate."""


def run_with_gateway(config: GatehouseConfig, data_dir: Path, clock: Clock | None,
                     work: Callable[[Gateway], Awaitable[T]]) -> T:
    """Run ``work`` on a Gateway built for it, from synchronous code.

    Start-up code (``gatehouse init``, the SCEP front end built inside the server's event
    loop, the CLI) is synchronous; the pipeline is async.  Inside a running loop the work
    runs on its own loop in a helper thread.
    """
    async def go() -> T:
        gateway = Gateway.build(config, data_dir, clock)
        try:
            return await work(gateway)
        finally:
            await gateway.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(go())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="system-cert") as pool:
        return pool.submit(asyncio.run, go()).result()


async def issue_system_certificate(gateway: Gateway, profile: str, key: SystemKey,
                                   subject: x509.Name, sans: Sequence[x509.GeneralName] = (),
                                   replaces: str | None = None) -> IssuedCertificate:
    """Enroll ``key`` on a built-in profile; GatewayError when it is not issued."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    with gateway.db.session() as session:
        known = replaces is not None and certificates.get(session, replaces) is not None
    request = EnrollmentRequest(
        protocol=Protocol.MANUAL, operation=Operation.ENROLL, profile=profile, csr=csr,
        csr_der=csr.public_bytes(serialization.Encoding.DER), principal=SYSTEM_PRINCIPAL,
        renewal_of=replaces if known else None)
    result = await gateway.enrollment.submit(request)
    if result.certificate is None:
        raise ConfigError(f"{profile}: the certificate was not issued "
                          f"({result.state}: {result.reason or 'waiting'})")
    return result.certificate


def serial_of(path: Path) -> str | None:
    """The serial (lower-case hex, as the inventory keys it) of a PEM file's first
    certificate, or None when there is none."""
    try:
        certificate = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None
    return format(certificate.serial_number, "x")


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with an owner-only (0600) file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def key_pem(key: SystemKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# -- the TLS server certificate --------------------------------------------------------


def listener_names(config: GatehouseConfig) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses the TLS certificate names: localhost, this host's
    names, and the listeners' host parts (not a wildcard address)."""
    names = ["localhost"]
    hostname = socket.gethostname()
    if hostname and hostname not in names:
        names.append(hostname)
    fqdn = socket.getfqdn()
    if fqdn and fqdn not in names and "." in fqdn:
        names.append(fqdn)
    ips = ["127.0.0.1", "::1"]
    for listen in (config.server.https, config.server.http):
        if listen:
            host = listen.rpartition(":")[0].strip("[]")
            try:
                address = ipaddress.ip_address(host)
                if not address.is_unspecified and str(address) not in ips:
                    ips.append(str(address))
            except ValueError:
                if host and host not in names:
                    names.append(host)
    return names, ips


def tls_paths(config: GatehouseConfig, data_dir: Path) -> tuple[Path, Path]:
    """(key, certificate) paths of the HTTPS listener."""
    return (resolve_path(data_dir, config.server.tls.key),
            resolve_path(data_dir, config.server.tls.cert))


def ensure_tls(config: GatehouseConfig, data_dir: Path, clock: Clock | None = None) -> bool:
    """Issue the TLS server certificate when its file is missing; True when issued.

    An existing file is kept whoever issued it (an older version, the operator)."""
    if tls_paths(config, data_dir)[1].exists():
        return False
    if SYSTEM_TLS not in system_profiles(config):
        return False  # no internal CA: the operator brings the certificate
    renew_tls(config, data_dir, clock)
    return True


def renew_tls(config: GatehouseConfig, data_dir: Path,
              clock: Clock | None = None) -> IssuedCertificate:
    """A fresh key and certificate for the listener's names, replacing the current one."""
    if SYSTEM_TLS not in system_profiles(config):
        raise NoSystemIssuer("no internal CA can issue the TLS server certificate: "
                             "install one at server.tls.cert and server.tls.key")
    key_path, cert_path = tls_paths(config, data_dir)
    names, ips = listener_names(config)
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]
                        if len(names[0]) <= _MAX_CN else [])
    key = ec.generate_private_key(ec.SECP256R1())
    replaces = serial_of(cert_path)

    async def issue(gateway: Gateway) -> IssuedCertificate:
        return await issue_system_certificate(gateway, SYSTEM_TLS, key, subject, sans,
                                              replaces)

    try:
        issued = run_with_gateway(config, data_dir, clock, issue)
    except GatewayError as exc:
        raise ConfigError(f"the TLS server certificate was not issued: {exc.detail}") from exc
    chain = b"".join(x509.load_der_x509_certificate(der).public_bytes(_PEM)
                     for der in (issued.der, *issued.chain[:1]))
    write_private(key_path, key_pem(key))
    write_private(cert_path, chain)  # public, but the data dir is owner-only (rule 8)
    return issued
