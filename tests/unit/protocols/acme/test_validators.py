"""Each challenge validator against real loopback servers (HTTP, TLS with ALPN, DNS)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.model import Identifier, IdentifierType
from protocols.acme import addresses, http01, validators
from protocols.acme.problems import ProblemType
from tests.support.dns_server import DnsTestServer
from tests.support.server import free_port

DNS, IP = IdentifierType.DNS, IdentifierType.IP
KEY_AUTH = "tok.thumb"
LOOPBACK = addresses.parse_allow(["127.0.0.0/8", "::1/128"])  # validation refuses it by default


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsTestServer]:
    server = DnsTestServer().start()
    yield server
    server.stop()


def network(dns_server: DnsTestServer, http: int = 1, tls: int = 1) -> validators.Network:
    return validators.Network(http, tls, dns_server.address, 2.0, LOOPBACK)


async def _serve_http(body: bytes, status: str = "200 OK") -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        assert b"GET /.well-known/acme-challenge/tok HTTP/1.1" in request
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_http01_success_and_failures(dns_server: DnsTestServer) -> None:
    async def go() -> None:
        server, port = await _serve_http(KEY_AUTH.encode() + b"\n")
        async with server:
            await http01.http01(network(dns_server, http=port), Identifier(DNS, "h.test"),
                                "tok", KEY_AUTH)
            await http01.http01(network(dns_server, http=port), Identifier(IP, "127.0.0.1"),
                                "tok", KEY_AUTH)
            with pytest.raises(validators.ValidationFailed) as info:
                await http01.http01(network(dns_server, http=port), Identifier(DNS, "h.test"),
                                    "tok", "tok.other")
            assert info.value.problem is ProblemType.INCORRECT_RESPONSE
        server, port = await _serve_http(b"nope", "404 Not Found")
        async with server:
            with pytest.raises(validators.ValidationFailed) as info:
                await http01.http01(network(dns_server, http=port), Identifier(DNS, "h.test"),
                                    "tok", KEY_AUTH)
            assert info.value.problem is ProblemType.UNAUTHORIZED
        with pytest.raises(validators.ValidationFailed) as info:
            await http01.http01(network(dns_server, http=free_port()),
                                    Identifier(DNS, "h.test"), "tok", KEY_AUTH)
        assert info.value.problem is ProblemType.CONNECTION

    asyncio.run(go())


def test_dns01(dns_server: DnsTestServer) -> None:
    expected = validators.dns01_value(KEY_AUTH)
    dns_server.set_txt("_acme-challenge.d.test", "unrelated", expected)
    asyncio.run(validators.dns01(network(dns_server), Identifier(DNS, "d.test"), KEY_AUTH))
    asyncio.run(validators.dns01(network(dns_server), Identifier(DNS, "*.d.test"), KEY_AUTH))
    with pytest.raises(validators.ValidationFailed) as info:
        asyncio.run(validators.dns01(network(dns_server), Identifier(DNS, "d.test"), "x.y"))
    assert info.value.problem is ProblemType.INCORRECT_RESPONSE
    with pytest.raises(validators.ValidationFailed) as info:
        asyncio.run(validators.dns01(network(dns_server), Identifier(DNS, "none.test"), KEY_AUTH))
    assert info.value.problem is ProblemType.UNAUTHORIZED


def _alpn_cert(tmp: Path, san: x509.GeneralName, digest: bytes | None,
               critical: bool = True) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, "acme")])).issuer_name(x509.Name([x509.NameAttribute(
            NameOID.COMMON_NAME, "acme")])).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False))
    if digest is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(
            validators.ACME_IDENTIFIER_OID, b"\x04\x20" + digest), critical=critical)
    cert = builder.sign(key, hashes.SHA256())
    (tmp / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    context.set_alpn_protocols(["acme-tls/1"])
    return context


async def _tls_check(context: ssl.SSLContext, net: validators.Network,
                     identifier: Identifier) -> None:
    async def handle(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        await validators.tlsalpn01(validators.Network(1, port, net.resolver, 2.0, LOOPBACK), identifier,
                                   KEY_AUTH)


def test_tlsalpn01(dns_server: DnsTestServer, tmp_path: Path) -> None:
    digest = hashlib.sha256(KEY_AUTH.encode()).digest()
    net = network(dns_server)
    asyncio.run(_tls_check(_alpn_cert(tmp_path, x509.DNSName("t.test"), digest), net,
                           Identifier(DNS, "t.test")))
    import ipaddress
    asyncio.run(_tls_check(_alpn_cert(tmp_path, x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                      digest), net, Identifier(IP, "127.0.0.1")))
    cases = [
        (_alpn_cert(tmp_path, x509.DNSName("other.test"), digest), ProblemType.UNAUTHORIZED),
        (_alpn_cert(tmp_path, x509.DNSName("t.test"), b"\x00" * 32), ProblemType.INCORRECT_RESPONSE),
        (_alpn_cert(tmp_path, x509.DNSName("t.test"), None), ProblemType.UNAUTHORIZED),
        (_alpn_cert(tmp_path, x509.DNSName("t.test"), digest, critical=False),
         ProblemType.UNAUTHORIZED),
    ]
    for context, problem in cases:
        with pytest.raises(validators.ValidationFailed) as info:
            asyncio.run(_tls_check(context, net, Identifier(DNS, "t.test")))
        assert info.value.problem is problem


def test_tlsalpn01_without_alpn_fails(dns_server: DnsTestServer, tmp_path: Path) -> None:
    digest = hashlib.sha256(KEY_AUTH.encode()).digest()
    context = _alpn_cert(tmp_path, x509.DNSName("t.test"), digest)
    context.set_alpn_protocols(["http/1.1"])
    with pytest.raises(validators.ValidationFailed) as info:
        asyncio.run(_tls_check(context, network(dns_server), Identifier(DNS, "t.test")))
    assert info.value.problem is ProblemType.TLS


def test_caa(dns_server: DnsTestServer) -> None:
    net = network(dns_server)
    dns_server.caa["caa.test"] = [(0, "issue", "gatehouse.test"), (0, "issuewild", ";")]
    dns_server.caa["other-ca.test"] = [(0, "issue", "letsencrypt.org")]
    asyncio.run(validators.check_caa(net, Identifier(DNS, "www.caa.test"), ["gatehouse.test"]))
    asyncio.run(validators.check_caa(net, Identifier(DNS, "free.test"), ["gatehouse.test"]))
    asyncio.run(validators.check_caa(net, Identifier(IP, "127.0.0.1"), []))
    for identifier in (Identifier(DNS, "*.caa.test"), Identifier(DNS, "a.other-ca.test")):
        with pytest.raises(validators.ValidationFailed) as info:
            asyncio.run(validators.check_caa(net, identifier, ["gatehouse.test"]))
        assert info.value.problem is ProblemType.CAA
