"""Property tests: no input makes the pkiMessage path fail other than as designed.

Any byte string, and any mutation of a valid message, ends as a CertRep (bytes) or as
``Unreadable`` (HTTP 400): never another exception (which would be a 500).
"""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ra import RaIdentity
from gateway.runtime import Gateway
from protocols.scep import message
from protocols.scep.errors import Unreadable
from protocols.scep.operations import Endpoint, PkiOperations
from tests.unit.protocols.scep.client import Client, csr_with_challenge, self_signed

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_SIGNER = self_signed(_KEY)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_read_header_only_raises_unreadable(data: bytes) -> None:
    try:
        message.read_header(data)
    except Unreadable:
        pass


def _valid(ra: RaIdentity) -> bytes:
    client = Client(ra_der=ra.der, key=_KEY, signer=_SIGNER)
    return client.pkcs_req(csr_with_challenge(_KEY, "fuzz", "not-a-challenge"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_messages_end_as_certrep_or_unreadable(gateway: Gateway, ra: RaIdentity,
                                                       data: st.DataObject) -> None:
    valid = _valid_cache(ra)
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "replace"]))
    at = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
    if kind == "flip":
        mutated = valid[:at] + bytes([valid[at] ^ data.draw(st.integers(1, 255))]) + valid[at + 1:]
    elif kind == "truncate":
        mutated = valid[:at]
    elif kind == "insert":
        mutated = valid[:at] + data.draw(st.binary(min_size=1, max_size=8)) + valid[at:]
    else:
        mutated = valid[:at] + data.draw(st.binary(min_size=1, max_size=8)) + valid[at + 8:]
    endpoint = Endpoint("default", gateway.config.profiles["default"], ra)
    try:
        answer = asyncio.run(PkiOperations(gateway).handle(endpoint, mutated))
    except Unreadable:
        return
    assert isinstance(answer, bytes) and answer[:1] == b"\x30"


_CACHE: dict[bytes, bytes] = {}


def _valid_cache(ra: RaIdentity) -> bytes:
    if ra.der not in _CACHE:
        _CACHE[ra.der] = _valid(ra)
    return _CACHE[ra.der]
