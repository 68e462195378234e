"""Policy engine rules, one behaviour per test."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from gateway.config import KeyRules, NameRules, ProfileConfig, SanRules, SubjectRules, ValidityRules
from gateway.errors import ErrorKind
from gateway.model import (
    EnrollmentRequest,
    IdentifierType,
    Operation,
    Outcome,
    Principal,
    PrincipalKind,
    Protocol,
)
from gateway.policy import Explanation, Facts, PolicyEngine, RenewalContext, pattern_matches
from tests.support.pki import csr_der, make_csr

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def decide(profile: ProfileConfig, csr: x509.CertificateSigningRequest, *,
           kind: PrincipalKind = PrincipalKind.PASSWORD,
           not_after: dt.datetime | None = None) -> tuple[Outcome, ErrorKind | None, str, object]:
    request = EnrollmentRequest(Protocol.EST, Operation.ENROLL, "p", csr, csr_der(csr),
                                Principal(kind, "u"), requested_not_after=not_after)
    explanation = PolicyEngine({"p": profile}).decide(request, Facts(now=NOW))
    decision = explanation.decision
    return decision.outcome, explanation.denial_kind, decision.reason, decision


@pytest.mark.parametrize(("pattern", "value", "matches"), [
    ("*.example.com", "www.example.com", True),
    ("*.example.com", "a.b.example.com", False),
    ("**.example.com", "a.b.example.com", True),
    ("*.example.com", "example.com", False),
    ("re:^dev-[0-9]+\\.corp$", "dev-12.corp", True),
    ("re:^dev-[0-9]+\\.corp$", "dev-x.corp", False),
    ("EXAMPLE.com", "example.COM", True),
])
def test_dns_patterns(pattern: str, value: str, matches: bool) -> None:
    assert pattern_matches(pattern, value) is matches


def test_ip_cidr_patterns() -> None:
    assert pattern_matches("10.0.0.0/8", "10.1.2.3", ip=True)
    assert not pattern_matches("10.0.0.0/8", "192.168.1.1", ip=True)
    assert pattern_matches("fd00::/8", "fd00::1", ip=True)


@pytest.mark.parametrize(("key_kind", "allowed"), [
    ("ec-p256", True), ("ec-p384", True), ("ec-p521", False), ("rsa-2048", True),
    ("rsa-1024", False), ("ed25519", True),
])
def test_key_rules(key_kind: str, allowed: bool) -> None:
    csr, _ = make_csr("k.example.test", dns=["k.example.test"], key_kind=key_kind)
    outcome, kind, reason, _ = decide(ProfileConfig(backend="b", keys=KeyRules()), csr)
    assert (outcome is Outcome.APPROVED) is allowed, reason
    if not allowed:
        assert kind is ErrorKind.UNSUPPORTED_KEY


def test_ed25519_can_be_refused() -> None:
    csr, _ = make_csr("e.example.test", key_kind="ed25519")
    outcome, kind, _, _ = decide(ProfileConfig(backend="b", keys=KeyRules(ed25519=False)), csr)
    assert outcome is Outcome.DENIED and kind is ErrorKind.UNSUPPORTED_KEY


def test_san_allow_and_deny_lists() -> None:
    profile = ProfileConfig(backend="b", sans=SanRules(
        dns=NameRules(allow=["*.corp.test"], deny=["admin.corp.test"]),
        ip=NameRules(allow=["10.0.0.0/8"])))
    ok, _ = make_csr("a.corp.test", dns=["a.corp.test"], ips=["10.1.1.1"])
    assert decide(profile, ok)[0] is Outcome.APPROVED
    denied_name, _ = make_csr("admin.corp.test", dns=["admin.corp.test"])
    outcome, kind, reason, _ = decide(profile, denied_name)
    assert outcome is Outcome.DENIED and kind is ErrorKind.POLICY_DENIED
    assert "admin.corp.test" in reason
    denied_ip, _ = make_csr("a.corp.test", dns=["a.corp.test"], ips=["192.168.0.1"])
    assert decide(profile, denied_ip)[0] is Outcome.DENIED


def test_max_san_count() -> None:
    profile = ProfileConfig(backend="b", sans=SanRules(max_count=2))
    csr, _ = make_csr("a.test", dns=["a.test", "b.test", "c.test"])
    outcome, _, reason, _ = decide(profile, csr)
    assert outcome is Outcome.DENIED and "at most 2" in reason


def test_cn_rules_and_require_cn() -> None:
    profile = ProfileConfig(backend="b", subject=SubjectRules(
        cn=NameRules(allow=["re:device-[0-9]+"]), require_cn=True))
    good, _ = make_csr("device-7")
    assert decide(profile, good)[0] is Outcome.APPROVED
    bad, _ = make_csr("laptop-7")
    assert decide(profile, bad)[0] is Outcome.DENIED
    none, _ = make_csr(None, dns=["x.test"])
    outcome, _, reason, _ = decide(profile, none)
    assert outcome is Outcome.DENIED and "common name" in reason


def test_validity_default_max_and_requested() -> None:
    profile = ProfileConfig(backend="b", validity=ValidityRules(default=dt.timedelta(days=30),
                                                                max=dt.timedelta(days=60)))
    csr, _ = make_csr("v.test")
    _, _, _, decision = decide(profile, csr)
    assert decision.not_after - NOW == dt.timedelta(days=30)  # type: ignore[attr-defined]
    assert decision.not_before < NOW  # type: ignore[attr-defined]  # backdated for skew
    outcome, _, reason, _ = decide(profile, csr, not_after=NOW + dt.timedelta(days=90))
    assert outcome is Outcome.DENIED and "maximum of 60 days" in reason


def test_key_usage_by_key_type() -> None:
    profile = ProfileConfig(backend="b", key_usage=["digital_signature", "key_encipherment"])
    ec_csr, _ = make_csr("ec.test")
    rsa_csr, _ = make_csr("rsa.test", key_kind="rsa-2048")
    assert decide(profile, ec_csr)[3].key_usage == {"digital_signature"}  # type: ignore[attr-defined]
    assert decide(profile, rsa_csr)[3].key_usage == {"digital_signature", "key_encipherment"}  # type: ignore[attr-defined]


def test_auth_method_not_allowed() -> None:
    profile = ProfileConfig(backend="b", auth_methods=[PrincipalKind.CLIENT_CERT])
    csr, _ = make_csr("a.test")
    outcome, kind, _, _ = decide(profile, csr, kind=PrincipalKind.PASSWORD)
    assert outcome is Outcome.DENIED and kind is ErrorKind.FORBIDDEN


def test_manual_approval_holds_but_admin_is_approval() -> None:
    profile = ProfileConfig(backend="b", approval="manual")
    csr, _ = make_csr("a.test")
    assert decide(profile, csr)[0] is Outcome.HELD
    assert decide(profile, csr, kind=PrincipalKind.ADMIN)[0] is Outcome.APPROVED


def test_unlisted_subject_attribute_is_refused_not_trimmed() -> None:
    profile = ProfileConfig(backend="b", subject=SubjectRules(allowed_attributes=["CN"]))
    csr, _ = make_csr("a.test", extra_subject=[x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil")])
    outcome, kind, reason, _ = decide(profile, csr)
    assert outcome is Outcome.DENIED and kind is ErrorKind.POLICY_DENIED
    assert "subject attribute O is not allowed" in reason
    ok, _ = make_csr("a.test")
    assert decide(profile, ok)[3].subject.rfc4514_string() == "CN=a.test"  # type: ignore[attr-defined]


def test_subject_attribute_value_patterns() -> None:
    profile = ProfileConfig(backend="b", subject=SubjectRules.model_validate(
        {"allowed_attributes": ["CN", {"OU": {"allow": ["Devices", "Kiosks"], "deny": []}}]}))
    good, _ = make_csr("a.test", extra_subject=[
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Kiosks")])
    bad, _ = make_csr("a.test", extra_subject=[
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Admins")])
    assert decide(profile, good)[0] is Outcome.APPROVED
    outcome, _, reason, _ = decide(profile, bad)
    assert outcome is Outcome.DENIED and "OU='Admins'" in reason


def test_allowed_attributes_as_mapping_and_unknown_names() -> None:
    rules = SubjectRules.model_validate({"allowed_attributes": {"CN": None, "2.5.4.10": {"allow": ["Acme"]}}})
    assert rules.attribute_rules()["2.5.4.3"] is None
    assert rules.attribute_rules()["2.5.4.10"] == NameRules(allow=["Acme"])
    with pytest.raises(ValueError, match="unknown subject attribute"):
        SubjectRules(allowed_attributes=["Nickname"])
    with pytest.raises(ValueError, match="listed twice"):
        SubjectRules(allowed_attributes=["O", "2.5.4.10"])


RESTRICTED = ProfileConfig(backend="b", sans=SanRules(
    dns=NameRules(allow=["*.devices.example.com"], deny=["admin.devices.example.com"]),
    ip=NameRules(allow=["10.0.0.0/8"]), email=NameRules(allow=["re:.*@example\\.com"])))


@pytest.mark.parametrize("cn", ["admin.devices.example.com", "www.google.com", "192.168.1.1",
                                "a1.devices.example.com.", "10.1.1"])
def test_subject_cn_passes_the_san_rules(cn: str) -> None:
    csr, _ = make_csr(cn)
    outcome, kind, reason, _ = decide(RESTRICTED, csr)
    assert outcome is Outcome.DENIED and kind is ErrorKind.POLICY_DENIED, reason


@pytest.mark.parametrize(("cn", "san"), [("a1.devices.example.com", "dns:a1.devices.example.com"),
                                         ("10.2.3.4", "ip:10.2.3.4")])
def test_host_cn_joins_the_sans(cn: str, san: str) -> None:
    csr, _ = make_csr(cn)
    decision = decide(RESTRICTED, csr)[3]
    assert [str(s) for s in decision.sans] == [san]  # type: ignore[attr-defined]
    both, _ = make_csr(cn.upper(), dns=[cn] if san.startswith("dns") else [])
    assert len(decide(RESTRICTED, both)[3].sans) == 1  # type: ignore[attr-defined]


def test_free_text_cn_meets_only_the_cn_rules() -> None:
    csr, _ = make_csr("Device 42", dns=["d42.devices.example.com"])
    decision = decide(RESTRICTED, csr)[3]
    assert [str(s) for s in decision.sans] == ["dns:d42.devices.example.com"]  # type: ignore[attr-defined]
    strict = RESTRICTED.model_copy(update={"subject": SubjectRules(cn=NameRules(allow=["re:Device \\d+"]))})
    assert decide(strict, csr)[0] is Outcome.APPROVED
    other, _ = make_csr("Printer 1", dns=["d42.devices.example.com"])
    assert decide(strict, other)[0] is Outcome.DENIED


def test_subject_email_passes_the_email_rules() -> None:
    evil, _ = make_csr("Device 42", extra_subject=[
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ceo@bank.example")])
    good, _ = make_csr("Device 42", extra_subject=[
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@example.com")])
    assert decide(RESTRICTED, evil)[0] is Outcome.DENIED
    assert decide(RESTRICTED, good)[0] is Outcome.APPROVED


def test_uri_san_for_intune_sid_passes() -> None:
    uri = "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-1001"
    csr, _ = make_csr("w.test", uris=[uri])
    decision = decide(ProfileConfig(backend="b"), csr)[3]
    assert [s.value for s in decision.sans if s.type is IdentifierType.URI] == [uri]  # type: ignore[attr-defined]


def test_empty_subject_and_no_san_is_refused() -> None:
    csr, _ = make_csr(None)
    outcome, _, reason, _ = decide(ProfileConfig(backend="b"), csr)
    assert outcome is Outcome.DENIED and "no subject" in reason


def test_regex_patterns_ignore_case_like_globs() -> None:
    assert pattern_matches("re:admin\\.devices\\.example\\.com", "ADMIN.devices.example.com")
    profile = ProfileConfig(backend="b", subject=SubjectRules(cn=NameRules(
        deny=["re:admin\\.devices\\.example\\.com"])), sans=SanRules(dns=NameRules(
            deny=["re:Admin\\..*"])))
    for cn, dns in (("ADMIN.devices.example.com", ()), ("Device 1", ("admin.Example.com",))):
        outcome, kind, reason, _ = decide(profile, make_csr(cn, dns=dns)[0])
        assert outcome is Outcome.DENIED and kind is ErrorKind.POLICY_DENIED, reason
    assert decide(profile, make_csr("a1.devices.example.com")[0])[0] is Outcome.APPROVED


@pytest.mark.parametrize("cn", [
    "admin..devices.example.com", "-admin.devices.example.com", ".devices.example.com",
    "admin\u200b.devices.example.com", "admin\u3002devices\u3002example\u3002com",
    "b\u00fccher.example.com", "host.123", "a.*.example.com", "a_b-.example.com", "*.com",
])
def test_host_shaped_cn_must_be_a_valid_host_name(cn: str) -> None:
    outcome, kind, reason, _ = decide(ProfileConfig(backend="b"), make_csr(cn)[0])
    assert outcome is Outcome.DENIED and kind is ErrorKind.POLICY_DENIED, reason
    assert "looks like a host name but is not a valid one" in reason


@pytest.mark.parametrize("cn", ["Device 42", "John Doe", "SN123456", "jane.doe@example.com",
                                "M\u00fcller, J.", "Printer 3.2", "*.devices.example.com",
                                "_svc.devices.example.com", "fd00::1"])
def test_free_text_and_valid_host_cns_pass(cn: str) -> None:
    outcome, _, reason, _ = decide(ProfileConfig(backend="b"), make_csr(cn)[0])
    assert outcome is Outcome.APPROVED, reason


def test_csr_attributes_a_ca_may_act_on_are_refused() -> None:
    clean, key = make_csr("a1.devices.example.com")
    builder = x509.CertificateSigningRequestBuilder().subject_name(clean.subject)
    informational = builder.add_attribute(x509.ObjectIdentifier("1.2.840.113549.1.9.7"), b"pw")
    signed = informational.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    assert decide(RESTRICTED, signed)[0] is Outcome.APPROVED
    esc6 = informational.add_attribute(x509.ObjectIdentifier("1.3.6.1.4.1.311.13.2.1"),
                                       b"SAN:upn=administrator@corp.example")
    outcome, kind, reason, _ = decide(RESTRICTED, esc6.sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    assert outcome is Outcome.DENIED and kind is ErrorKind.POLICY_DENIED
    assert "1.3.6.1.4.1.311.13.2.1" in reason


def _renewal(profile_name: str, certificate_profile: str) -> Explanation:
    """A same-key renewal on ``profile_name`` of a certificate recorded under
    ``certificate_profile``, names unchanged."""
    csr, key = make_csr("device.example.test", dns=["device.example.test"])
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(csr.subject)
            .public_key(csr.public_key()).serial_number(7)
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("device.example.test")]),
                           critical=False)
            .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    request = EnrollmentRequest(Protocol.SCEP, Operation.RENEW, profile_name, csr, csr_der(csr),
                                Principal(PrincipalKind.CLIENT_CERT, "f" * 64), renewal_of="7")
    engine = PolicyEngine({"a": ProfileConfig(backend="b"), "b": ProfileConfig(backend="b")})
    return engine.decide(request, Facts(now=NOW, renewal=RenewalContext(cert, False,
                                                                         certificate_profile)))


def test_renewal_never_crosses_profiles() -> None:
    crossed = _renewal("b", "a")
    assert crossed.decision.outcome is Outcome.DENIED
    assert crossed.denial_kind is ErrorKind.FORBIDDEN
    assert crossed.decision.reason == "the certificate to renew was not issued under profile 'b'"
    same = _renewal("b", "b")
    assert same.decision.outcome is Outcome.APPROVED, same.decision.reason
