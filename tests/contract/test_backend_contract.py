"""The one contract every CA backend passes: internal CA, Vault/OpenBao, ADCS (certsrv).

issue → a certificate whose chain verifies against the backend's own trust anchor, with
the serial, subject and SANs reported as they are in the DER (and validity as decided,
where the backend lets the gateway decide it); ca_chain, crl, revoke (or Unsupported),
health, and the error mapping: a refusal is BackendRejected with the CA's reason, an
unreachable CA is BackendUnavailable (retryable) and an unhealthy Health.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from ca_backends.base import BackendRejected, BackendUnavailable, CaBackend, Unsupported
from gateway.errors import ErrorKind
from gateway.model import IdentifierType, IssuedCertificate, Pending, RevocationReason
from tests.contract.conftest import Subject, request_and_decision, run


def _verify(subject: Subject, issued: IssuedCertificate, dns: str) -> list[x509.Certificate]:
    leaf = x509.load_der_x509_certificate(issued.der)
    chain = [x509.load_der_x509_certificate(der) for der in issued.chain]
    verifier = (PolicyBuilder().store(Store([subject.anchor]))
                .time(dt.datetime.now(dt.UTC)).build_server_verifier(x509.DNSName(dns)))
    return verifier.verify(leaf, chain)


async def _with(backend: CaBackend, coro_factory):  # type: ignore[no-untyped-def]
    try:
        return await coro_factory(backend)
    finally:
        await backend.close()


def test_issue_verifies_to_the_backends_anchor(subject: Subject) -> None:
    request, decision = request_and_decision("web.example.test")
    issued = run(_with(subject.build(), lambda b: b.issue(request, decision)))
    assert isinstance(issued, IssuedCertificate)
    path = _verify(subject, issued, "web.example.test")
    assert path[-1] == subject.anchor
    leaf = x509.load_der_x509_certificate(issued.der)
    assert issued.serial == format(leaf.serial_number, "x")
    assert issued.subject == leaf.subject.rfc4514_string() == "CN=web.example.test"
    assert issued.issuer == leaf.issuer.rfc4514_string()
    assert [(i.type, i.value) for i in issued.sans] == [(IdentifierType.DNS, "web.example.test")]
    assert leaf.public_key() == request.csr.public_key()
    assert issued.not_before == leaf.not_valid_before_utc
    assert issued.not_after == leaf.not_valid_after_utc
    assert issued.backend == "under-test"
    assert decision.not_after is not None
    if subject.honours_validity:
        assert abs(leaf.not_valid_after_utc - decision.not_after) <= dt.timedelta(seconds=1)
    # The chain runs issuer first and never repeats the leaf.
    assert issued.chain and x509.load_der_x509_certificate(issued.chain[0]).subject == leaf.issuer
    assert issued.der not in issued.chain


def test_ca_chain_is_issuing_ca_first_ending_at_the_anchor(subject: Subject) -> None:
    chain = run(_with(subject.build(), lambda b: b.ca_chain()))
    assert chain[-1] == subject.anchor
    for child, parent in itertools.pairwise(chain):
        child.verify_directly_issued_by(parent)
    request, decision = request_and_decision("chain.example.test")
    issued = run(_with(subject.build(), lambda b: b.issue(request, decision)))
    assert x509.load_der_x509_certificate(issued.der).issuer == chain[0].subject


def test_crl_is_der_signed_by_the_issuing_ca_or_none(subject: Subject) -> None:
    data = run(_with(subject.build(), lambda b: b.crl()))
    if not subject.has_crl:
        assert data is None  # the gateway signs this backend's CRLs itself
        return
    crl = x509.load_der_x509_crl(data)
    chain = run(_with(subject.build(), lambda b: b.ca_chain()))
    assert crl.issuer == chain[0].subject
    assert crl.is_signature_valid(chain[0].public_key())  # type: ignore[arg-type]


def test_revoke_takes_effect_or_is_unsupported(subject: Subject) -> None:
    request, decision = request_and_decision("revoke.example.test")
    issued = run(_with(subject.build(), lambda b: b.issue(request, decision)))
    if not subject.revokes:
        with pytest.raises(Unsupported) as caught:
            run(_with(subject.build(), lambda b: b.revoke(issued.serial,
                                                          RevocationReason.KEY_COMPROMISE)))
        assert caught.value.kind is ErrorKind.UNSUPPORTED and issued.serial in caught.value.detail
        return
    run(_with(subject.build(), lambda b: b.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)))
    if subject.has_crl:
        crl = x509.load_der_x509_crl(run(_with(subject.build(), lambda b: b.crl())))
        assert crl.get_revoked_certificate_by_serial_number(int(issued.serial, 16)) is not None


def test_health_is_ok(subject: Subject) -> None:
    health = run(_with(subject.build(), lambda b: b.health()))
    assert health.ok, health.detail
    assert health.detail


def test_refusal_is_backend_rejected_with_the_cas_reason(subject: Subject) -> None:
    request, decision = subject.refusal()
    with pytest.raises(BackendRejected) as caught:
        run(_with(subject.build(), lambda b: b.issue(request, decision)))
    assert caught.value.kind is ErrorKind.BACKEND_REJECTED
    expected = {"internal": "notAfter", "vault": "not allowed by this role",
                "adcs": "The permissions on the certificate template do not allow"}[subject.kind]
    assert expected in caught.value.detail


def test_unhealthy_backend_says_so(subject: Subject) -> None:
    health = run(_with(subject.unhealthy(), lambda b: b.health()))
    assert not health.ok and health.detail


def test_unreachable_backend_is_unavailable(subject: Subject) -> None:
    if subject.unreachable is None:
        assert subject.kind == "internal"  # signs in process: nothing to be unreachable
        return
    request, decision = request_and_decision()
    with pytest.raises(BackendUnavailable) as caught:
        run(_with(subject.unreachable(), lambda b: b.issue(request, decision)))
    assert caught.value.kind is ErrorKind.BACKEND_UNAVAILABLE
    assert "127.0.0.1" in caught.value.detail


def test_pending_resolves_through_poll_or_poll_is_unsupported(subject: Subject) -> None:
    if subject.pending_template is None:
        with pytest.raises(Unsupported):
            run(_with(subject.build(), lambda b: b.poll("1")))
        return
    request, decision = request_and_decision("queued.example.test")
    decision = dataclasses.replace(decision, template=subject.pending_template)
    first = run(_with(subject.build(), lambda b: b.issue(request, decision)))
    assert isinstance(first, Pending) and first.retry_after >= 1
    again = run(_with(subject.build(), lambda b: b.poll(first.backend_ref)))
    assert again == first
    assert subject.approve is not None
    subject.approve(first.backend_ref)
    issued = run(_with(subject.build(), lambda b: b.poll(first.backend_ref)))
    assert isinstance(issued, IssuedCertificate) and issued.backend_ref == first.backend_ref
    _verify(subject, issued, "queued.example.test")
