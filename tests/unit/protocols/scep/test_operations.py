"""PKIOperation in-process: the pipeline, challenges and idempotent retransmissions."""

from __future__ import annotations

import asyncio
import datetime as dt

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth.challenges import create_challenge
from gateway.ra import RaIdentity
from gateway.runtime import Gateway
from protocols.scep.operations import Endpoint, PkiOperations, transaction_key
from tests.unit.protocols.scep.client import Client, csr_with_challenge, self_signed


def _challenge(gateway: Gateway, uses: int = 1) -> str:
    with gateway.db.session() as session:
        return create_challenge(session, profile="default", now=dt.datetime.now(dt.UTC),
                                ttl=dt.timedelta(hours=1), uses=uses).secret


def _handle(gateway: Gateway, ra: RaIdentity, body: bytes) -> bytes:
    endpoint = Endpoint("default", gateway.config.profiles["default"], ra)
    return asyncio.run(PkiOperations(gateway).handle(endpoint, body))


def test_csr_der_ending_in_a_whitespace_byte_is_kept_whole(gateway: Gateway,
                                                           ra: RaIdentity) -> None:
    """A DER CSR may end in 0x0a or 0x20: it must not be 'stripped' like PEM text."""
    secret = _challenge(gateway, uses=50)
    for attempt in range(400):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        csr = csr_with_challenge(key, f"ws-{attempt}", secret)
        if csr[-1:] in (b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c"):
            break
    else:
        raise AssertionError("no CSR ending in a whitespace byte was generated")
    client = Client(ra_der=ra.der, key=key, signer=self_signed(key))
    reply = client.read(_handle(gateway, ra, client.pkcs_req(csr)))
    assert reply.status == "0", reply.fail_text


def test_retransmission_does_not_spend_the_challenge_again(gateway: Gateway,
                                                           ra: RaIdentity) -> None:
    secret = _challenge(gateway)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = Client(ra_der=ra.der, key=key, signer=self_signed(key))
    csr = csr_with_challenge(key, "retransmit", secret)
    first = client.read(_handle(gateway, ra, client.pkcs_req(csr)))
    second = client.read(_handle(gateway, ra, client.pkcs_req(csr)))
    assert first.status == second.status == "0"
    assert first.certificates[0] == second.certificates[0]
    assert second.recipient_nonce == client.last_nonce  # each answer echoes its own nonce


def test_transaction_key_binds_profile_subject_and_renewal() -> None:
    base = transaction_key("default", "tid", b"\x30\x00", None)
    assert len(base) <= 128 and base.startswith("tid#")
    assert base != transaction_key("other", "tid", b"\x30\x00", None)
    assert base != transaction_key("default", "tid", b"\x30\x02\x31\x00", None)
    assert base != transaction_key("default", "tid", b"\x30\x00", "abcd")
    assert len(transaction_key("default", "x" * 300, b"", None)) <= 128
