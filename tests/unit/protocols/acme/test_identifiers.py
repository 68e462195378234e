from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.model import Identifier, IdentifierType
from protocols.acme.addresses import parse_allow
from protocols.acme.identifiers import check_csr_matches, parse_order_identifiers
from protocols.acme.problems import AcmeProblem, ProblemType

DNS, IP = IdentifierType.DNS, IdentifierType.IP


def test_valid_identifiers_normalised_and_deduplicated() -> None:
    found = parse_order_identifiers([{"type": "dns", "value": "WWW.Example.com"},
                                     {"type": "dns", "value": "www.example.com"},
                                     {"type": "ip", "value": "2606:4700:0::1"},
                                     {"type": "dns", "value": "*.example.com"}], limit=10)
    assert found == sorted([Identifier(DNS, "www.example.com"), Identifier(IP, "2606:4700::1"),
                            Identifier(DNS, "*.example.com")])


@pytest.mark.parametrize("value", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1",
                                   "fd00:ec2::254", "::ffff:127.0.0.1", "100.64.0.1"])
def test_internal_addresses_rejected_unless_opened(value: str) -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_order_identifiers([{"type": "ip", "value": value}], limit=10)
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER
    opened = parse_allow(["0.0.0.0/0", "::/0"])
    assert parse_order_identifiers([{"type": "ip", "value": value}], limit=10, allow=opened)


@pytest.mark.parametrize("value", ["-bad.example", "a..b", "*.*.example.com", "foo.*.example.com",
                                   "x" * 64 + ".com", "under_score.com", "single", "1.2.3.256"])
def test_bad_dns_names_rejected_with_subproblem(value: str) -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_order_identifiers([{"type": "dns", "value": value}], limit=10)
    assert info.value.type in (ProblemType.REJECTED_IDENTIFIER, ProblemType.MALFORMED)
    assert info.value.subproblems[0].identifier["value"] == value


def test_unsupported_type_and_compound() -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_order_identifiers([{"type": "email", "value": "a@b.c"}], limit=10)
    assert info.value.type is ProblemType.UNSUPPORTED_IDENTIFIER
    with pytest.raises(AcmeProblem) as info:
        parse_order_identifiers([{"type": "email", "value": "a@b.c"},
                                 {"type": "ip", "value": "nope"}], limit=10)
    assert info.value.type is ProblemType.COMPOUND and len(info.value.subproblems) == 2


@pytest.mark.parametrize("raw", [None, [], "x", [1], [{"type": "dns"}]])
def test_malformed_lists(raw: object) -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_order_identifiers(raw, limit=10)
    assert info.value.type is ProblemType.MALFORMED


def test_too_many() -> None:
    with pytest.raises(AcmeProblem):
        parse_order_identifiers([{"type": "dns", "value": f"a{i}.test"} for i in range(5)], limit=4)


def _csr(cn: str | None, dns: list[str], ips: list[str]) -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_csr_must_match_order_exactly() -> None:
    order = [Identifier(DNS, "a.test"), Identifier(IP, "127.0.0.1")]
    check_csr_matches(_csr("a.test", ["a.test"], ["127.0.0.1"]), order)
    for csr in (_csr(None, ["a.test"], []), _csr(None, ["a.test", "b.test"], ["127.0.0.1"]),
                _csr("c.test", ["a.test"], ["127.0.0.1"])):
        with pytest.raises(AcmeProblem) as info:
            check_csr_matches(csr, order)
        assert info.value.type is ProblemType.BAD_CSR
