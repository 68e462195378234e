"""Challenge validators: http-01, dns-01 (RFC 8555 §8.3, §8.4), tls-alpn-01 (RFC 8737),
and the CAA check (RFC 8659).  Each raises ``ValidationFailed`` with a problem type.

Names resolve through the configured resolver (``acme.dns_resolver``, HOST:PORT) when
there is one, else the system resolver, so tests can point everything at loopback.
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
from protocols.acme.jws import b64encode
from protocols.acme.problems import ProblemType

ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1
MAX_HTTP_RESPONSE = 64 * 1024


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
    """Addresses to connect to for ``identifier``."""
    if identifier.type is IdentifierType.IP:
        return [identifier.value]
    name = identifier.value
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


def _host_header(identifier: Identifier) -> str:
    if identifier.type is IdentifierType.IP and ":" in identifier.value:
        return f"[{identifier.value}]"
    return identifier.value


async def http01(network: Network, identifier: Identifier, token: str, key_auth: str) -> None:
    """RFC 8555 §8.3: GET http://NAME/.well-known/acme-challenge/TOKEN returns key_auth."""
    addresses = await resolve(network, identifier)
    last: ValidationFailed | None = None
    for address in addresses:
        try:
            reader, writer = await asyncio.open_connection(address, network.http01_port)
        except OSError as exc:
            last = ValidationFailed(ProblemType.CONNECTION,
                                    f"cannot connect to {address}:{network.http01_port}: "
                                    f"{exc.strerror or exc}")
            continue
        try:
            writer.write((f"GET /.well-known/acme-challenge/{token} HTTP/1.1\r\n"
                          f"Host: {_host_header(identifier)}\r\nUser-Agent: gatehouse-acme\r\n"
                          "Accept: */*\r\nConnection: close\r\n\r\n").encode("ascii"))
            await writer.drain()
            data = await _read_response(reader)
        except OSError as exc:
            raise ValidationFailed(ProblemType.CONNECTION, f"HTTP exchange failed: {exc}") from None
        finally:
            writer.close()
        _check_http_response(data, key_auth)
        return
    assert last is not None
    raise last


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """Headers, then Content-Length bytes (or up to EOF): servers may ignore Connection: close."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ValidationFailed(ProblemType.CONNECTION, "HTTP response headers too large") from None
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    length = None
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            try:
                length = int(line.split(b":", 1)[1])
            except ValueError:
                raise ValidationFailed(ProblemType.CONNECTION, "bad Content-Length") from None
    if length is not None:
        if length > MAX_HTTP_RESPONSE:
            raise ValidationFailed(ProblemType.UNAUTHORIZED, "the challenge response is too large")
        try:
            return head + await reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            return head + exc.partial
    body = b""
    while len(body) <= MAX_HTTP_RESPONSE:
        chunk = await reader.read(MAX_HTTP_RESPONSE)
        if not chunk:
            break
        body += chunk
    return head + body


def _check_http_response(data: bytes, key_auth: str) -> None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValidationFailed(ProblemType.CONNECTION, "no complete HTTP response")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or parts[1] != "200":
        raise ValidationFailed(ProblemType.UNAUTHORIZED,
                               f"the challenge URL answered {status_line[:80]!r}, not 200")
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        body = _dechunk(body)
    if body.strip() != key_auth.encode("ascii"):
        raise ValidationFailed(ProblemType.INCORRECT_RESPONSE,
                               "the key authorization served does not match")


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise ValidationFailed(ProblemType.CONNECTION, "bad chunked encoding") from None
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


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
    values = {b"".join(r.strings).decode("ascii", "replace") for r in answer}  # type: ignore[attr-defined]
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
    tags = [(r.tag.decode().lower(), r.value.decode()) for r in records]  # type: ignore[attr-defined]
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
