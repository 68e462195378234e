"""The in-process harness for the fuzz tests: the real ASGI app, a log watch, mutators.

``harness()`` builds the whole application (``create_app(Gateway.build(...))``) on a data
directory made by ``gatehouse init``, with an EST user and an admin token, and serves it
to a starlette TestClient at ``https://testserver`` (the HTTPS listener's scheme).
``Harness.check`` fails on any 5xx and on any ERROR log record or logged traceback, the
marks of an unhandled exception.

The mutators work on valid messages: byte flips, truncation, insertion, deletion,
duplicated segments, and DER-aware damage (a TLV's length inflated or shrunk, its tag
replaced), so the parsers see inputs that are almost right, as an attacker sends them.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.support.server import run_cli

# Reproducible in CI (derandomized, a fixed number of examples); a longer random hunt:
# GATEHOUSE_FUZZ_EXAMPLES=5000 GATEHOUSE_FUZZ_RANDOM=1 pytest tests/security/test_fuzz_*.py
FUZZ = settings(max_examples=int(os.environ.get("GATEHOUSE_FUZZ_EXAMPLES", "200")), deadline=None,
                derandomize=os.environ.get("GATEHOUSE_FUZZ_RANDOM") != "1", print_blob=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EST_USER = "fuzz-dev"
EST_PASSWORD = "fuzz-" + os.urandom(8).hex()
OPEN_PROFILE = "open"
PROXY = "127.0.0.2"


class _ErrorWatch(logging.Handler):
    """Collects ERROR records and every record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            with self._lock:
                self.records.append(record)

    def take(self) -> list[str]:
        with self._lock:
            records, self.records = self.records, []
        formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
        return [formatter.format(r) for r in records]


@dataclass
class Harness:
    data_dir: Path
    client: TestClient
    admin_token: str
    gateway: Any
    watch: _ErrorWatch = field(default_factory=_ErrorWatch)

    def check(self, response: httpx.Response, what: object = "") -> httpx.Response:
        """No 5xx, no ERROR record, no logged traceback; returns the response."""
        problems = self.watch.take()
        assert response.status_code < 500, \
            f"{response.status_code} for {what!r}: {response.text[:300]}\n" + "\n".join(problems)
        assert not problems, f"unexpected error logged for {what!r}:\n" + "\n".join(problems)
        return response


_SHARED: dict[str, Harness] = {}
_SEEDS: dict[str, bytes] = {}


def seed(label: str, make: Callable[[], bytes]) -> bytes:
    """A valid message made once per session: signatures and envelopes are randomised,
    and hypothesis must see the same seed every time it replays an example."""
    if label not in _SEEDS:
        _SEEDS[label] = make()
    return _SEEDS[label]


def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """One app for the whole session (``gatehouse init`` costs seconds)."""
    if "app" not in _SHARED:
        from gateway.app import create_app
        from gateway.config import config_path, load_config
        from gateway.runtime import Gateway

        data_dir = tmp_path_factory.mktemp("fuzz") / "gatehouse-data"
        run_cli(["init"], data_dir)
        config_file = data_dir / "gatehouse.yaml"
        config = yaml.safe_load(config_file.read_text())
        default = config["profiles"][config.get("default_profile", "default")]
        # SCEP without a challenge: mutated requests reach the policy, not just the RA.
        config["profiles"][OPEN_PROFILE] = {**default, "scep": {"challenge": "none"}}
        # The test client is a trusted TLS-terminating proxy: the EST client-certificate
        # header (URL-encoded PEM) is an entry point to fuzz too.
        config["est"] = {**(config.get("est") or {}), "trusted_proxies": [f"{PROXY}/32"]}
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        run_cli(["user", "add", "default", EST_USER], data_dir, stdin=EST_PASSWORD + "\n")
        token = run_cli(["token", "create", "--role", "admin"], data_dir).stdout.strip()
        gateway = Gateway.build(load_config(config_path(data_dir)), data_dir)
        client = TestClient(create_app(gateway), base_url="https://testserver",
                            raise_server_exceptions=False, client=(PROXY, 50000))
        shared = Harness(data_dir, client, token, gateway)
        logging.getLogger().addHandler(shared.watch)
        _SHARED["app"] = shared
        atexit.register(close_harness)
    return _SHARED["app"]


def close_harness() -> None:
    shared = _SHARED.pop("app", None)
    if shared is not None:
        logging.getLogger().removeHandler(shared.watch)
        shared.client.close()
        shared.gateway.db.dispose()


# -- DER structure -------------------------------------------------------------------------


@dataclass(frozen=True)
class Tlv:
    offset: int  # of the tag byte
    header: int  # tag + length bytes
    length: int  # content length


def tlvs(der: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[Tlv]:
    """Every TLV of a definite-length DER encoding, depth first; stops where it breaks.

    OCTET and BIT STRINGs whose content is DER themselves (CMS content, extension
    values, signed CSRs in a CMS message) are walked too.
    """
    end = len(der) if end is None else end
    found: list[Tlv] = []
    position = start
    while position + 2 <= end and depth < 40:
        tag, first = der[position], der[position + 1]
        if tag & 0x1F == 0x1F or first == 0x80:
            break  # multi-byte tags and indefinite lengths: not walked
        if first < 0x80:
            header, length = 2, first
        else:
            count = first & 0x7F
            if count > 4 or position + 2 + count > end:
                break
            header, length = 2 + count, int.from_bytes(der[position + 2:position + 2 + count], "big")
        if position + header + length > end:
            break
        found.append(Tlv(position, header, length))
        inner = position + header
        if tag & 0x20:
            found += tlvs(der, inner, inner + length, depth + 1)
        elif tag == 0x04 and length and der[inner] == 0x30:
            found += tlvs(der, inner, inner + length, depth + 1)
        elif tag == 0x03 and length > 1 and der[inner] == 0 and der[inner + 1] == 0x30:
            found += tlvs(der, inner + 1, inner + length, depth + 1)
        position += header + length
    return found


def _length_bytes(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


_ODD_LENGTHS = (0, 1, 0x7F, 0x80, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
_ODD_TAGS = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x16, 0x17, 0x18, 0x1E,
             0x30, 0x31, 0x80, 0xA0, 0xA3, 0xFF)


def mutate(data: st.DataObject, valid: bytes) -> bytes:
    """One or two mutations of ``valid``, chosen by hypothesis (shrinks to fewer)."""
    message = valid
    for _ in range(data.draw(st.integers(1, 2), label="rounds")):
        message = _mutate_once(data, message)
    return message


def _mutate_once(data: st.DataObject, message: bytes) -> bytes:
    if not message:
        return data.draw(st.binary(max_size=16))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "replace", "delete",
                                      "duplicate", "length", "tag", "shrink"]), label="kind")
    at = data.draw(st.integers(0, len(message) - 1), label="at")
    if kind == "flip":
        bit = data.draw(st.integers(1, 255))
        return message[:at] + bytes([message[at] ^ bit]) + message[at + 1:]
    if kind == "truncate":
        return message[:at]
    if kind == "insert":
        return message[:at] + data.draw(st.binary(min_size=1, max_size=16)) + message[at:]
    if kind == "replace":
        chunk = data.draw(st.binary(min_size=1, max_size=16))
        return message[:at] + chunk + message[at + len(chunk):]
    if kind == "delete":
        return message[:at] + message[at + data.draw(st.integers(1, 64)):]
    if kind == "duplicate":
        size = data.draw(st.integers(1, 256))
        return message[:at + size] + message[at:]
    items = tlvs(message)
    if not items:
        return message[:at]
    tlv = data.draw(st.sampled_from(items), label="tlv")
    content = tlv.offset + tlv.header
    if kind == "tag":
        tag = data.draw(st.sampled_from(_ODD_TAGS), label="tag")
        return message[:tlv.offset] + bytes([tag]) + message[tlv.offset + 1:]
    if kind == "length":
        length = data.draw(st.sampled_from((*_ODD_LENGTHS, tlv.length + 1, max(tlv.length - 1, 0))))
        return message[:tlv.offset + 1] + _length_bytes(length) + message[content:]
    # shrink: the TLV's content cut short, its length kept consistent (the parents' not)
    cut = data.draw(st.integers(0, tlv.length))
    return (message[:tlv.offset + 1] + _length_bytes(cut) + message[content:content + cut]
            + message[content + tlv.length:])
