"""Challenge validators: http-01, dns-01 (RFC 8555 §8.3, §8.4), tls-alpn-01 (RFC 8737),
and the CAA check (RFC 8659).  Each raises ``ValidationFailed`` with a problem type.

Names resolve through the configured resolver (``acme.dns_resolver``, HOST:PORT) when
there is one, else the system resolver, so tests can point everything at loopback.

Server-side request forgery (issue #10 rule 7): every address validation connects to is
checked against ``addresses.allowed`` *after* resolution, and the connection goes to that
checked address (the name travels only in the Host header and SNI), so a DNS answer that
changes between check and connect cannot steer it.  http-01 and its redirects are in
protocols/acme/http01.py.  Failure details never echo what the target sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from gateway.model import Identifier, IdentifierType
from protocols.acme import addresses
from protocols.acme.jws import b64encode
from protocols.acme.problems import ProblemType

ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1


class ValidationFailed(Exception):
    def __init__(self, problem: ProblemType, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Network:
    """Where validation connects: ports and resolver."""

    http01_port: int
    tlsalpn01_port: int
    resolver: str | None  # HOST:PORT or None for the system resolver
    timeout: float
    allow: tuple[addresses.IPNetwork, ...] = ()  # non-public ranges opened for labs

    def dns(self) -> dns.asyncresolver.Resolver:
        if self.resolver is None:
            resolver = dns.asyncresolver.Resolver()
        else:
            host, _, port = self.resolver.rpartition(":")
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [host.strip("[]")]
            resolver.port = int(port)
        resolver.lifetime = self.timeout
        resolver.timeout = self.timeout
        return resolver


async def resolve(network: Network, identifier: Identifier) -> list[str]:
    """Addresses validation may connect to for ``identifier``: only allowed ones.

    Non-public addresses are dropped (``addresses.allowed``); when none is left the
    validation fails with a generic detail that names no address.
    """
    if identifier.type is IdentifierType.IP:
        found = [identifier.value]
    else:
        found = await _lookup(network, identifier.value)
    usable = [a for a in found if addresses.allowed(a, network.allow)]
    if not usable:
        raise ValidationFailed(ProblemType.REJECTED_IDENTIFIER,
                               f"the address of {identifier.value.removeprefix('*.')} is "
                               "not publicly routable")
    return usable


async def _lookup(network: Network, name: str) -> list[str]:
    if network.resolver is None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ValidationFailed(ProblemType.DNS, f"cannot resolve {name}: {exc}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))
    resolver = network.dns()
    found: list[str] = []
    errors = []
    for rdtype in ("A", "AAAA"):  # IPv4 first; AAAA only when there is no A record
        if found:
            break
        try:
            answer = await resolver.resolve(name, rdtype)
            found.extend(r.to_text() for r in answer)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            errors.append(str(exc))
    if not found:
        raise ValidationFailed(ProblemType.DNS, f"no A/AAAA records for {name}"
                               + (f" ({errors[0]})" if errors else ""))
    return found


def dns01_value(key_auth: str) -> str:
    return b64encode(hashlib.sha256(key_auth.encode("ascii")).digest())


async def dns01(network: Network, identifier: Identifier, key_auth: str) -> None:
    """RFC 8555 §8.4: a TXT record at _acme-challenge.NAME holds b64url(SHA-256(key_auth))."""
    base = identifier.value.removeprefix("*.")
    name = f"_acme-challenge.{base}"
    try:
        answer = await network.dns().resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        raise ValidationFailed(ProblemType.UNAUTHORIZED, f"no TXT record at {name}") from None
    except dns.exception.DNSException as exc:
        raise ValidationFailed(ProblemType.DNS, f"DNS lookup of {name} failed: {exc}") from None
    expected = dns01_value(key_auth)
    values = {b"".join(r.strings).decode("ascii", "replace") for r in answer}
    if expected not in values:
        raise ValidationFailed(ProblemType.INCORRECT_RESPONSE,
                               f"no TXT record at {name} holds the expected value")


async def tlsalpn01(network: Network, identifier: Identifier, key_auth: str) -> None:
    """RFC 8737 §3: a self-signed certificate for the name, via ALPN acme-tls/1."""
    addresses = await resolve(network, identifier)
    if identifier.type is IdentifierType.IP:  # RFC 8738 §6: SNI is the reverse name
        sni = dns.reversename.from_address(identifier.value).to_text(omit_final_dot=True)
    else:
        sni = identifier.value
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["acme-tls/1"])
    last: ValidationFailed | None = None
    for address in addresses:
        try:
            _reader, writer = await asyncio.open_connection(
                address, network.tlsalpn01_port, ssl=context, server_hostname=sni)
        except ssl.SSLError as exc:
            raise ValidationFailed(ProblemType.TLS, f"TLS handshake failed: {exc.reason}") from None
        except OSError as exc:
            last = ValidationFailed(ProblemType.CONNECTION,
                                    f"cannot connect to {address}:{network.tlsalpn01_port}: "
                                    f"{exc.strerror or exc}")
            continue
        try:
            tls = writer.get_extra_info("ssl_object")
            alpn = tls.selected_alpn_protocol() if tls else None
            der = tls.getpeercert(binary_form=True) if tls else None
        finally:
            writer.close()
        if alpn != "acme-tls/1":
            raise ValidationFailed(ProblemType.TLS, "the server did not negotiate acme-tls/1")
        if not der:
            raise ValidationFailed(ProblemType.TLS, "the server sent no certificate")
        check_alpn_certificate(der, identifier, key_auth)
        return
    assert last is not None
    raise last


def check_alpn_certificate(der: bytes, identifier: Identifier, key_auth: str) -> None:
    """RFC 8737 §3: exactly the identifier as SAN; critical acmeIdentifier = SHA-256."""
    try:
        cert = x509.load_der_x509_certificate(der)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound as exc:
        raise ValidationFailed(ProblemType.UNAUTHORIZED,
                               f"the certificate lacks the {exc.oid.dotted_string} extension") from None
    except ValueError:
        raise ValidationFailed(ProblemType.UNAUTHORIZED, "the certificate cannot be parsed") from None
    names = list(sans)
    if identifier.type is IdentifierType.IP:
        ok = len(names) == 1 and isinstance(names[0], x509.IPAddress) and \
            str(names[0].value) == identifier.value
    else:
        ok = len(names) == 1 and isinstance(names[0], x509.DNSName) and \
            names[0].value.lower() == identifier.value
    if not ok:
        raise ValidationFailed(ProblemType.UNAUTHORIZED,
                               "the certificate's subjectAltName is not exactly the identifier")
    if not ext.critical:
        raise ValidationFailed(ProblemType.UNAUTHORIZED, "the acmeIdentifier extension is not critical")
    digest = hashlib.sha256(key_auth.encode("ascii")).digest()
    expected = b"\x04\x20" + digest  # DER OCTET STRING of 32 bytes
    value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if value != expected:
        raise ValidationFailed(ProblemType.INCORRECT_RESPONSE,
                               "the acmeIdentifier extension does not hold the key authorization digest")


async def check_caa(network: Network, identifier: Identifier, identities: list[str]) -> None:
    """RFC 8659 §3: find the relevant CAA RRset climbing the tree; one must permit us."""
    if identifier.type is not IdentifierType.DNS:
        return  # CAA applies to DNS names only
    wildcard = identifier.value.startswith("*.")
    name = dns.name.from_text(identifier.value.removeprefix("*."))
    resolver = network.dns()
    while True:
        try:
            answer = await resolver.resolve(name, "CAA")
            records = list(answer)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            records = []
        except dns.exception.DNSException as exc:
            raise ValidationFailed(ProblemType.CAA, f"CAA lookup for {name} failed: {exc}") from None
        if records:
            break
        if name == dns.name.root or len(name.labels) <= 2:
            return  # no CAA anywhere: any CA may issue
        name = name.parent()
    tags = [(r.tag.decode().lower(), r.value.decode()) for r in records]
    relevant = [v for t, v in tags if t == "issuewild"] if wildcard else []
    if not relevant:
        relevant = [v for t, v in tags if t == "issue"]
        if not relevant and not wildcard:
            return  # only iodef or other tags: no restriction
        if not relevant:
            return
    wanted = {i.lower() for i in identities}
    for value in relevant:
        domain = value.split(";", 1)[0].strip().lower()
        if domain and domain in wanted:
            return
    raise ValidationFailed(ProblemType.CAA,
                           f"CAA records at {name.to_text(omit_final_dot=True)} do not permit "
                           "this CA to issue")


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
