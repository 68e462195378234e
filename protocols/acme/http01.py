"""http-01 validation (RFC 8555 §8.3) with Let's Encrypt's redirect rules.

At most ``MAX_REDIRECTS`` redirects, each to http on the http-01 port or https on the
tls-alpn-01 port (80 and 443 unless overridden for labs); every hop's host is resolved and
its addresses checked (``validators.resolve``) before connecting to that very address.
Failure details never echo what the target sent: no status line, header or body.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from gateway.model import Identifier, IdentifierType
from protocols.acme.problems import ProblemType
from protocols.acme.validators import Network, ValidationFailed, is_ip, resolve

MAX_HTTP_RESPONSE = 64 * 1024
MAX_REDIRECTS = 10  # as Let's Encrypt
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                   r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def _host_header(identifier: Identifier) -> str:
    if identifier.type is IdentifierType.IP and ":" in identifier.value:
        return f"[{identifier.value}]"
    return identifier.value


@dataclass(frozen=True, slots=True)
class _Target:
    """One http-01 fetch: where to connect and what to ask for."""

    scheme: str  # http or https
    identifier: Identifier  # the host, as a name or an address
    port: int
    path: str  # path and query, starting with '/'

    def host_header(self, default_port: int) -> str:
        host = _host_header(self.identifier)
        return host if self.port == default_port else f"{host}:{self.port}"


async def http01(network: Network, identifier: Identifier, token: str, key_auth: str) -> None:
    """RFC 8555 §8.3: GET http://NAME/.well-known/acme-challenge/TOKEN returns key_auth.

    Redirects are followed (at most ``MAX_REDIRECTS``), each target checked like the first.
    """
    target = _Target("http", identifier, network.http01_port,
                     f"/.well-known/acme-challenge/{token}")
    for hop in range(MAX_REDIRECTS + 1):
        data = await _fetch(network, target)
        status, location = _status(data)
        if status not in _REDIRECTS:
            _check_http_response(data, key_auth)
            return
        if hop == MAX_REDIRECTS:
            break
        target = _redirect(network, target, location)
    raise ValidationFailed(ProblemType.CONNECTION,
                           f"too many redirects (more than {MAX_REDIRECTS})")


async def _fetch(network: Network, target: _Target) -> bytes:
    """One GET to the first reachable allowed address of ``target``."""
    last: ValidationFailed | None = None
    context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    if target.scheme == "https":  # like Let's Encrypt: a redirect to https is not verified
        context = _insecure_tls()
        if target.identifier.type is IdentifierType.DNS:
            server_hostname = target.identifier.value
    default_port = 443 if target.scheme == "https" else 80
    for address in await resolve(network, target.identifier):
        try:
            reader, writer = await asyncio.open_connection(
                address, target.port, ssl=context, server_hostname=server_hostname)
        except ssl.SSLError:
            raise ValidationFailed(ProblemType.TLS, "the TLS handshake failed") from None
        except OSError as exc:
            last = ValidationFailed(ProblemType.CONNECTION,
                                    f"cannot connect to {target.identifier.value} port "
                                    f"{target.port}: {exc.strerror or 'connection failed'}")
            continue
        try:
            writer.write((f"GET {target.path} HTTP/1.1\r\n"
                          f"Host: {target.host_header(default_port)}\r\n"
                          "User-Agent: gatehouse-acme\r\n"
                          "Accept: */*\r\nConnection: close\r\n\r\n").encode("ascii"))
            await writer.drain()
            return await _read_response(reader)
        except OSError:
            raise ValidationFailed(ProblemType.CONNECTION, "the HTTP exchange failed") from None
        finally:
            writer.close()
    assert last is not None
    raise last


def _insecure_tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _status(data: bytes) -> tuple[int | None, str | None]:
    """The status code and the Location header (None when absent or unreadable)."""
    head = data.partition(b"\r\n\r\n")[0]
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    status = None
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() \
            and len(parts[1]) == 3:
        status = int(parts[1])
    location = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"location":
            location = value.strip().decode("latin-1")
    return status, location


def _redirect(network: Network, current: _Target, location: str | None) -> _Target:
    """The next hop: http on the http-01 port or https on the tls-alpn-01 port only."""
    if not location or len(location) > 2048 or not location.isprintable():
        raise ValidationFailed(ProblemType.CONNECTION, "a redirect without a usable Location")
    base = f"{current.scheme}://{current.host_header(-1)}{current.path}"
    try:
        url = urlsplit(urljoin(base, location))
        host = (url.hostname or "").lower()
        port = url.port
    except ValueError:
        raise ValidationFailed(ProblemType.CONNECTION, "a redirect to an invalid URL") from None
    allowed_ports = {"http": network.http01_port, "https": network.tlsalpn01_port}
    if url.scheme not in allowed_ports:
        raise ValidationFailed(ProblemType.CONNECTION,
                               "a redirect to a scheme other than http or https")
    wanted = allowed_ports[url.scheme]
    if port is None:
        port = 80 if url.scheme == "http" else 443
    if port != wanted:
        raise ValidationFailed(ProblemType.CONNECTION,
                               f"a redirect to port {port}; only {wanted} is allowed for "
                               f"{url.scheme}")
    if is_ip(host):
        identifier = Identifier(IdentifierType.IP, host)
    elif _HOST.match(host):
        identifier = Identifier(IdentifierType.DNS, host)
    else:
        raise ValidationFailed(ProblemType.CONNECTION, "a redirect to an invalid host")
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    if not path.isascii() or any(c in path for c in " \r\n"):
        raise ValidationFailed(ProblemType.CONNECTION, "a redirect to an invalid path")
    return _Target(url.scheme, identifier, port, path)


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
    status, _location = _status(data)
    if status != 200:  # the code only: never echo what the target sent (issue #10 rule 7)
        shown = f"HTTP status {status}" if status is not None else "no valid HTTP status line"
        raise ValidationFailed(ProblemType.UNAUTHORIZED,
                               f"the challenge URL answered {shown}, not 200")
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
