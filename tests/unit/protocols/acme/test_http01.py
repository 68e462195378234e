"""http-01 redirect rules (issue #10 rule 7): scheme, port, host and the answer's status."""

from __future__ import annotations

import pytest

from gateway.model import Identifier, IdentifierType
from protocols.acme import http01
from protocols.acme.problems import ProblemType
from protocols.acme.validators import Network, ValidationFailed

NET = Network(80, 443, None, 2.0)
START = http01._Target("http", Identifier(IdentifierType.DNS, "a.example"), 80,
                       "/.well-known/acme-challenge/tok")


@pytest.mark.parametrize(("location", "scheme", "host", "port", "path"), [
    ("/next?x=1", "http", "a.example", 80, "/next?x=1"),
    ("http://b.example/p", "http", "b.example", 80, "/p"),
    ("https://B.example/p", "https", "b.example", 443, "/p"),
    ("https://b.example:443/", "https", "b.example", 443, "/"),
    ("http://[2001:4860::1]/p", "http", "2001:4860::1", 80, "/p"),
])
def test_allowed_redirects(location: str, scheme: str, host: str, port: int, path: str) -> None:
    target = http01._redirect(NET, START, location)
    assert (target.scheme, target.identifier.value, target.port, target.path) == \
        (scheme, host, port, path)


@pytest.mark.parametrize(("location", "words"), [
    ("http://b.example:8080/", "port 8080"), ("https://b.example:8443/", "port 8443"),
    ("http://b.example:443/", "port 443"), ("ftp://b.example/", "scheme"),
    ("file:///etc/passwd", "scheme"), (None, "Location"), ("http://bad_host!/", "host"),
    ("http://b.example/a b", "path"), ("x" * 3000, "Location"),
])
def test_refused_redirects(location: str | None, words: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        http01._redirect(NET, START, location)
    assert words in info.value.detail
    assert info.value.problem is ProblemType.CONNECTION


def test_status_never_echoes_the_reason_phrase() -> None:
    with pytest.raises(ValidationFailed) as info:
        http01._check_http_response(b"HTTP/1.1 403 secret-banner\r\n\r\nbody", "k")
    assert "secret" not in info.value.detail and "403" in info.value.detail
    assert http01._status(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n") == (302, "/x")
    assert http01._status(b"garbage") == (None, None)
