"""gateway.tls_client against the uvicorn it is pinned to.

The TLS-terminating protocol subclasses uvicorn's httptools protocol and relies on its
hooks (constructor keywords, connection_made/data_received/connection_lost, flow control,
on_message_begin filling ``self.scope``, ``is_ssl`` reading ``sslcontext``).  These tests
fail loudly when an upgrade moves any of them: then re-check gateway/tls_client.py before
widening the pin in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import ssl
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from packaging.requirements import Requirement
from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import is_ssl
from uvicorn.server import ServerState

from gateway.tls_client import server_context, tls_protocol
from tests.support.pki import key_pem, make_key

ROOT = Path(__file__).resolve().parents[3]


def _pinned(name: str) -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.name.lower() == name.lower():
            return requirement
    raise AssertionError(f"{name} is not a declared dependency")


@pytest.mark.parametrize("name", ["uvicorn", "pyOpenSSL"])
def test_installed_version_is_inside_the_tested_pin(name: str) -> None:
    requirement = _pinned(name)
    assert requirement.specifier.filter([version(name)]), (
        f"{name} {version(name)} is outside {requirement.specifier}: "
        "re-check gateway/tls_client.py against it, then move the pin")
    assert any(spec.operator == "<" for spec in requirement.specifier), "the pin needs an upper bound"


@pytest.mark.parametrize(("method", "parameters"), [
    ("__init__", ["self", "config", "server_state", "app_state", "_loop"]),
    ("connection_made", ["self", "transport"]),
    ("data_received", ["self", "data"]),
    ("connection_lost", ["self", "exc"]),
    ("pause_writing", ["self"]),
    ("resume_writing", ["self"]),
    ("on_message_begin", ["self"]),
])
def test_uvicorn_hooks_keep_their_signatures(method: str, parameters: list[str]) -> None:
    hook = getattr(HttpToolsProtocol, method)
    assert list(inspect.signature(hook).parameters) == parameters


def test_uvicorn_reads_https_from_the_sslcontext_extra() -> None:
    class Probe(asyncio.Transport):
        def __init__(self, value: object) -> None:
            super().__init__()
            self._value = value

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return self._value if name == "sslcontext" else default

    assert is_ssl(Probe(object())) and not is_ssl(Probe(None))


class _Tcp(asyncio.Transport):
    """The TCP side, in memory: what the server writes is kept for the client."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8443)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path, x509.Certificate]:
    key = make_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp / f"{name}.key").write_bytes(key_pem(key))
    return tmp / f"{name}.pem", tmp / f"{name}.key", cert


@pytest.mark.parametrize("tls_max", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_an_untrusted_client_certificate_reaches_the_app_with_its_tls_extension(
        tmp_path: Path, tls_max: ssl.TLSVersion) -> None:
    """Drives the protocol the way uvicorn's server does (constructor keywords, TCP
    transport), with a client certificate from nowhere: the handshake completes, the
    request reaches the app, the scope carries the certificate and tls-unique."""
    server_pem, server_key, _ = _self_signed(tmp_path, "gateway.example.test")
    client_pem, client_key, client_cert = _self_signed(tmp_path, "rogue.example.test")
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def run() -> tuple[bytes, bytes | None]:
        config = Config(app, lifespan="off", log_config=None, access_log=False, ws="none",
                        http=tls_protocol(server_context(server_pem, server_key, [])))
        config.load()
        protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=ServerState(), app_state={},
            _loop=asyncio.get_running_loop())
        tcp = _Tcp()
        protocol.connection_made(tcp)
        client_context = ssl.create_default_context(cafile=str(server_pem))
        client_context.maximum_version = tls_max
        client_context.load_cert_chain(str(client_pem), str(client_key))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_context.wrap_bio(incoming, outgoing, server_hostname="gateway.example.test")

        def pump() -> None:
            if outgoing.pending:
                protocol.data_received(outgoing.read())
            if tcp.out:
                incoming.write(bytes(tcp.out))
                tcp.out.clear()

        for _ in range(10):
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        client.write(b"GET /probe HTTP/1.1\r\nHost: gateway.example.test\r\n\r\n")
        response = b""
        for _ in range(50):
            pump()
            await asyncio.sleep(0.01)
            pump()
            try:
                response += client.read(65536)
            except ssl.SSLWantReadError:
                pass
            if response.endswith(b"0\r\n\r\n"):
                break
        unique = client.get_channel_binding("tls-unique") if tls_max == ssl.TLSVersion.TLSv1_2 else None
        protocol.connection_lost(None)
        return response, unique

    response, unique = asyncio.run(run())
    assert response.startswith(b"HTTP/1.1 200") and b"\r\nok\r\n" in response, response
    tls = scopes[0]["extensions"]["tls"]
    assert scopes[0]["scheme"] == "https"
    assert tls["client_cert_der"] == [client_cert.public_bytes(Encoding.DER)]
    assert tls["client_cert_name"] == "CN=rogue.example.test"
    assert tls["tls_version"] == (0x0303 if tls_max == ssl.TLSVersion.TLSv1_2 else 0x0304)
    assert tls["tls_unique"] == unique
    assert (unique is not None) == (tls_max == ssl.TLSVersion.TLSv1_2)


def test_the_certificate_request_names_every_anchor(tmp_path: Path) -> None:
    """The handshake's list of acceptable client-certificate issuers carries each anchor,
    so a device with several identities presents one the gateway may accept; an anchor
    file that is not PEM stops start-up."""
    from gateway.errors import ConfigError

    server_pem, server_key, _ = _self_signed(tmp_path, "gateway.example.test")
    one_pem, _, one = _self_signed(tmp_path, "idevid-ca-one.example.test")
    two_pem, _, two = _self_signed(tmp_path, "idevid-ca-two.example.test")
    from OpenSSL import SSL

    def offered(anchors: list[Path]) -> list[bytes]:
        connection = SSL.Connection(server_context(server_pem, server_key, anchors), None)
        return [name.der() for name in connection.get_client_ca_list()]

    assert offered([one_pem, two_pem]) == [one.subject.public_bytes(), two.subject.public_bytes()]
    assert offered([]) == []
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError):
        server_context(server_pem, server_key, [bad])
