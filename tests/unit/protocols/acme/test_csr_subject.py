"""ACME CSR subjects: at most one CN naming an ordered identifier (issue #10, rule 3)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.model import Identifier, IdentifierType
from protocols.acme.identifiers import check_csr_subject
from protocols.acme.problems import AcmeProblem, ProblemType
from tests.support.pki import make_csr

ORDERED = [Identifier(IdentifierType.DNS, "a.example.com"), Identifier(IdentifierType.IP, "192.0.2.1")]


@pytest.mark.parametrize("cn", [None, "a.example.com", "A.Example.com", "192.0.2.1"])
def test_empty_subject_or_one_ordered_cn_passes(cn: str | None) -> None:
    csr, _ = make_csr(cn, dns=["a.example.com"])
    check_csr_subject(csr, ORDERED)


@pytest.mark.parametrize(("cn", "extra"), [
    ("a.example.com", [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")]),
    ("a.example.com", [x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]),
    ("a.example.com", [x509.NameAttribute(NameOID.COMMON_NAME, "192.0.2.1")]),
    ("b.example.com", []),
])
def test_anything_else_is_bad_csr(cn: str, extra: list[x509.NameAttribute]) -> None:
    csr, _ = make_csr(cn, extra_subject=extra)
    with pytest.raises(AcmeProblem) as info:
        check_csr_subject(csr, ORDERED)
    assert info.value.type is ProblemType.BAD_CSR
