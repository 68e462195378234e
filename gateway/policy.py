"""The policy engine: profile rules → Decision (approve / deny / hold).

Pure: it reads the request, the profile and a few facts the pipeline looks up (recent
request count, the certificate being renewed) and decides.  A denial carries a reason
that is safe to show the client and an ``ErrorKind`` the adapters map to their wire
format.  ``explain`` returns every check made, for ``gatehouse policy explain``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from gateway.config import NameRules, ProfileConfig
from gateway.errors import ErrorKind
from gateway.issuance_check import requested_attribute_problems, requested_extension_problems
from gateway.model import (
    Decision,
    EnrollmentRequest,
    Identifier,
    IdentifierType,
    Operation,
    Outcome,
    PrincipalKind,
    Protocol,
    san_identifiers,
)
from gateway.system_profiles import is_system_profile, is_system_request
from gateway.x509_names import attribute_label, eku_oid

_DNS_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$", re.IGNORECASE)
# A full stop, or a character IDNA (UTS #46) maps to one: what makes a CN look like a host.
_HOST_SHAPED = re.compile("[.\u3002\uff0e\uff61]")
_EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def subject_cn_identifier(cn: str) -> Identifier | None:
    """The SAN a CN stands for: an IP address, a DNS name (two labels or more), or None.

    None means the CN names no host ("Device 42", "SN123456", "John Doe",
    "jane.doe@example.com"): only ``subject.cn`` rules apply to it.  A CN shaped like a
    host — a dot (or an IDNA label separator such as U+3002) and no whitespace or ``@`` —
    must be a valid IP address or DNS name (LDH labels, optional leading ``*.``);
    otherwise (an empty label, a leading hyphen, a trailing dot, a zero-width space or
    other non-ASCII character, dotted digits that are no IP address) it is refused rather
    than let through as free text, since legacy TLS clients and IDNA mapping may still
    turn it into a host name.
    """
    try:
        return Identifier(IdentifierType.IP, str(ipaddress.ip_address(cn)))
    except ValueError:
        pass
    if not _HOST_SHAPED.search(cn) or any(c.isspace() or c == "@" for c in cn):
        return None
    labels = cn.split(".")
    if any(labels) and all(label.isdigit() for label in labels if label):
        raise Denied(ErrorKind.POLICY_DENIED, f"subject CN {cn!r} is not a valid IP address")
    if labels[-1] == "" and all(_DNS_LABEL.match(label) for label in labels[:-1]):
        raise Denied(ErrorKind.POLICY_DENIED,
                     f"subject CN {cn!r}: a DNS name must not end with a dot")
    host = labels[1:] if labels[0] == "*" else labels
    if not cn.isascii() or len(cn) > 253 or len(host) < 2 \
            or not all(_DNS_LABEL.match(label) for label in host) or labels[-1].isdigit():
        raise Denied(ErrorKind.POLICY_DENIED,
                     f"subject CN {cn!r} looks like a host name but is not a valid one")
    return Identifier(IdentifierType.DNS, cn)


class Denied(Exception):
    def __init__(self, kind: ErrorKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RenewalContext:
    """The certificate a renew/rekey replaces, as the inventory knows it."""

    certificate: x509.Certificate | None
    revoked: bool
    profile: str | None = None  # the profile the inventory recorded it under


@dataclass(frozen=True, slots=True)
class Facts:
    """What the pipeline looked up for the policy engine."""

    now: dt.datetime
    recent_requests: Callable[[dt.datetime], int] = lambda _since: 0
    renewal: RenewalContext | None = None


@dataclass
class Explanation:
    decision: Decision
    denial_kind: ErrorKind | None = None
    checks: list[str] = field(default_factory=list)


# -- name matching ---------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^.]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^.]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def pattern_matches(pattern: str, value: str, *, ip: bool = False) -> bool:
    """Glob (``*`` within a label, ``**`` across), ``re:`` regex, or CIDR for IPs.

    Globs and regexes ignore case, as DNS names do (RFC 4343): a deny pattern
    ``re:admin\\.example\\.com`` must also stop ``ADMIN.example.com``.
    """
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], value, re.IGNORECASE) is not None
    if ip and pattern not in ("*", "**"):
        try:
            network = ipaddress.ip_network(pattern, strict=False)
            return ipaddress.ip_address(value) in network
        except ValueError:
            return fnmatch.fnmatchcase(value, pattern)
    return _glob_regex(pattern).fullmatch(value) is not None


def name_allowed(rules: NameRules, value: str, *, ip: bool = False) -> bool:
    if any(pattern_matches(p, value, ip=ip) for p in rules.deny):
        return False
    return any(pattern_matches(p, value, ip=ip) for p in rules.allow)


# -- CSR facts -------------------------------------------------------------------------


def csr_identifiers(csr: x509.CertificateSigningRequest) -> list[Identifier]:
    """SANs of the CSR's extensionRequest; raises Denied for kinds we cannot issue."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:
        raise Denied(ErrorKind.BAD_CSR, f"the CSR's extensions cannot be parsed: {exc}") from exc
    for name in ext.value:
        if isinstance(name, x509.IPAddress):
            if not isinstance(name.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise Denied(ErrorKind.BAD_CSR, "an IP SAN must be an address, not a network")
        elif not isinstance(name, x509.DNSName | x509.RFC822Name
                            | x509.UniformResourceIdentifier):
            raise Denied(ErrorKind.POLICY_DENIED,
                         f"subjectAltName of type {type(name).__name__} is not supported")
    return san_identifiers(ext.value)


def key_description(csr: x509.CertificateSigningRequest) -> str:
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _EC_CURVES.get(key.curve.name, key.curve.name)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


class PolicyEngine:
    """Decides requests against the profiles of the configuration."""

    def __init__(self, profiles: dict[str, ProfileConfig]) -> None:
        self._profiles = profiles

    def profile(self, name: str) -> ProfileConfig | None:
        return self._profiles.get(name)

    def decide(self, request: EnrollmentRequest, facts: Facts) -> Explanation:
        explanation = Explanation(Decision(Outcome.DENIED, "", request.profile))
        profile = self._profiles.get(request.profile)
        try:
            if profile is None or (is_system_profile(request.profile)
                                   and not is_system_request(request)):
                # The built-in profiles exist for Gatehouse's own certificates only.
                raise Denied(ErrorKind.UNKNOWN_PROFILE, f"unknown profile {request.profile!r}")
            explanation.decision = self._decide(request, profile, facts, explanation.checks)
        except Denied as denial:
            explanation.checks.append(f"DENY: {denial.reason}")
            explanation.denial_kind = denial.kind
            explanation.decision = Decision(Outcome.DENIED, denial.reason, request.profile,
                                            backend=profile.backend if profile else "")
        return explanation

    def _decide(self, request: EnrollmentRequest, profile: ProfileConfig, facts: Facts,
                checks: list[str]) -> Decision:
        principal = request.principal
        if principal.kind not in profile.auth_methods:
            raise Denied(ErrorKind.FORBIDDEN,
                         f"authentication by {principal.kind} is not allowed for profile "
                         f"{request.profile!r}")
        checks.append(f"auth method {principal.kind} allowed")

        if not request.csr_signature_ok:
            raise Denied(ErrorKind.BAD_CSR, "the CSR's signature does not verify")
        checks.append("CSR signature verifies")

        key_name = self._check_key(request.csr, profile)
        checks.append(f"key {key_name} allowed")

        subject, subject_names = self._subject(request.csr, profile)
        checks.append(f"subject {subject.rfc4514_string() or '(empty)'} allowed")

        sans = self._sans(request, profile, subject_names)
        checks.append("SANs allowed: " + (", ".join(map(str, sans)) or "(none)"))
        checks.append(check_client_cert_names(request, profile, subject, sans))
        if not sans and len(subject) == 0:
            raise Denied(ErrorKind.POLICY_DENIED, "the CSR names no subject and no subjectAltName")

        if request.operation in (Operation.RENEW, Operation.REKEY):
            self._check_renewal(request, profile, facts, subject, sans)
            checks.append(f"renewal of {request.renewal_of} allowed")

        if profile.rate_limit is not None:
            since = facts.now - profile.rate_limit.window
            count = facts.recent_requests(since)
            if count > profile.rate_limit.requests:
                raise Denied(ErrorKind.RATE_LIMITED,
                             f"rate limit: more than {profile.rate_limit.requests} requests in "
                             f"{profile.rate_limit.window} for this client")
            checks.append(f"rate limit: {count}/{profile.rate_limit.requests}")

        not_before, not_after = self._validity(request, profile, facts.now)
        checks.append(f"validity {not_before.isoformat()} .. {not_after.isoformat()}")

        key_usage = self._key_usage(request.csr, profile)
        ekus = tuple(eku_oid(name) for name in profile.extended_key_usage)
        refused = requested_extension_problems(request.csr, key_usage, ekus)
        if refused:  # never dropped silently: some CAs copy them (docs/security.md, rule 4)
            raise Denied(ErrorKind.POLICY_DENIED, "; ".join(refused))
        checks.append("CSR extensions within the decision")
        refused = requested_attribute_problems(request.csr)
        if refused:  # ADCS acts on some (ESC6): docs/security.md, rule 4
            raise Denied(ErrorKind.POLICY_DENIED, "; ".join(refused))
        checks.append("CSR attributes informational only")

        held = profile.approval == "manual" and principal.kind is not PrincipalKind.ADMIN
        outcome = Outcome.HELD if held else Outcome.APPROVED
        checks.append("held for manual approval" if held else f"approved → backend {profile.backend}")
        return Decision(
            outcome=outcome,
            reason="held for manual approval" if held else "approved",
            profile=request.profile,
            backend=profile.backend,
            fallback_backend=profile.fallback_backend,
            template=profile.template,
            not_before=not_before,
            not_after=not_after,
            subject=subject,
            sans=sans,
            key_usage=key_usage,
            extended_key_usage=ekus,
        )

    # -- individual rules --------------------------------------------------------------

    @staticmethod
    def _check_key(csr: x509.CertificateSigningRequest, profile: ProfileConfig) -> str:
        key = csr.public_key()
        rules = profile.keys
        name = key_description(csr)
        if isinstance(key, rsa.RSAPublicKey):
            if not rules.rsa_min_bits <= key.key_size <= rules.rsa_max_bits:
                raise Denied(ErrorKind.UNSUPPORTED_KEY,
                             f"RSA key of {key.key_size} bits: this profile needs "
                             f"{rules.rsa_min_bits} to {rules.rsa_max_bits} bits")
            if key.public_numbers().e < 65537:
                raise Denied(ErrorKind.UNSUPPORTED_KEY, "RSA public exponent below 65537")
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if name not in rules.ec_curves:
                raise Denied(ErrorKind.UNSUPPORTED_KEY,
                             f"EC curve {name} is not allowed (allowed: "
                             f"{', '.join(rules.ec_curves) or 'none'})")
        elif isinstance(key, ed25519.Ed25519PublicKey):
            if not rules.ed25519:
                raise Denied(ErrorKind.UNSUPPORTED_KEY, "Ed25519 keys are not allowed")
        elif isinstance(key, ed448.Ed448PublicKey):
            if not rules.ed448:
                raise Denied(ErrorKind.UNSUPPORTED_KEY, "Ed448 keys are not allowed")
        else:
            raise Denied(ErrorKind.UNSUPPORTED_KEY, f"{name} keys are not supported")
        return name

    @staticmethod
    def _subject(csr: x509.CertificateSigningRequest, profile: ProfileConfig
                 ) -> tuple[x509.Name, list[Identifier]]:
        """Check every subject attribute; the subject as asked, and the SANs its CNs name.

        Only the profile's ``subject.allowed_attributes`` may appear (anything else is
        refused, never trimmed: the certificate must be what the CSR asked for or
        nothing).  Every CN passes ``subject.cn``; a CN that is a DNS name or IP address,
        and a subject emailAddress, also pass the ``sans`` rules of their type.
        """
        rules = profile.subject.attribute_rules()
        common_names = []
        for rdn in csr.subject.rdns:
            for attr in rdn:
                label = attribute_label(attr.oid.dotted_string)
                if attr.oid.dotted_string not in rules:
                    raise Denied(ErrorKind.POLICY_DENIED,
                                 f"subject attribute {label} is not allowed by this profile "
                                 f"(allowed: {', '.join(map(attribute_label, rules)) or 'none'})")
                value = attr.value if isinstance(attr.value, str) else attr.value.hex()
                value_rules = rules[attr.oid.dotted_string]
                if value_rules is not None and not name_allowed(value_rules, value):
                    raise Denied(ErrorKind.POLICY_DENIED,
                                 f"subject {label}={value!r} is not allowed by this profile")
                if attr.oid == NameOID.COMMON_NAME:
                    common_names.append(value)
                elif attr.oid == NameOID.EMAIL_ADDRESS and not name_allowed(
                        profile.sans.email, value):
                    raise Denied(ErrorKind.POLICY_DENIED,
                                 f"subject emailAddress {value!r} is not allowed by this "
                                 f"profile's email name rules")
        if profile.subject.require_cn and not common_names:
            raise Denied(ErrorKind.POLICY_DENIED, "this profile requires a subject common name")
        named: list[Identifier] = []
        for cn in common_names:
            if not name_allowed(profile.subject.cn, cn):
                raise Denied(ErrorKind.POLICY_DENIED, f"subject CN {cn!r} is not allowed")
            identifier = subject_cn_identifier(cn)
            if identifier is None:
                continue
            if not name_allowed(getattr(profile.sans, identifier.type.value), identifier.value,
                                ip=identifier.type is IdentifierType.IP):
                raise Denied(ErrorKind.POLICY_DENIED,
                             f"subject CN {cn!r} is a {identifier.type} name this profile's "
                             f"name rules do not allow")
            named.append(identifier)
        return csr.subject, named

    @staticmethod
    def _sans(request: EnrollmentRequest, profile: ProfileConfig,
              from_subject: list[Identifier]) -> tuple[Identifier, ...]:
        """The CSR's SANs, the proven identifiers, and the names its CNs stand for.

        A CN that is a DNS name or IP address joins the SANs when the CSR lacks it
        (CA/Browser Forum Baseline Requirements §7.1.4.3: the CN repeats a SAN).
        """
        found = csr_identifiers(request.csr)
        for identifier in (*request.proven_identifiers, *from_subject):
            if identifier not in found:
                found.append(identifier)
        sans: list[Identifier] = []
        for identifier in found:
            if identifier in sans:
                continue
            rules = getattr(profile.sans, identifier.type.value)
            if not name_allowed(rules, identifier.value, ip=identifier.type is IdentifierType.IP):
                raise Denied(ErrorKind.POLICY_DENIED,
                             f"{identifier.type} name {identifier.value!r} is not allowed "
                             f"for profile {request.profile!r}")
            sans.append(identifier)
        if len(sans) > profile.sans.max_count:
            raise Denied(ErrorKind.POLICY_DENIED,
                         f"{len(sans)} subjectAltNames: at most {profile.sans.max_count} allowed")
        return tuple(sans)

    @staticmethod
    def _check_renewal(request: EnrollmentRequest, profile: ProfileConfig, facts: Facts,
                       subject: x509.Name, sans: tuple[Identifier, ...]) -> None:
        renewal = facts.renewal
        if renewal is None or renewal.certificate is None:
            raise Denied(ErrorKind.FORBIDDEN, "the certificate to renew is not in the inventory")
        if renewal.profile != request.profile:
            # A renewal carries the old certificate's standing into a profile; another
            # profile's certificate (other anchors, EKU, backend, auth) proves nothing here.
            raise Denied(ErrorKind.FORBIDDEN, "the certificate to renew was not issued under "
                                              f"profile {request.profile!r}")
        if renewal.revoked:
            raise Denied(ErrorKind.FORBIDDEN, "the certificate to renew is revoked")
        old = renewal.certificate
        if old.not_valid_after_utc + profile.renewal.expired_grace < facts.now:
            raise Denied(ErrorKind.FORBIDDEN, "the certificate to renew has expired")
        if profile.renewal.allow_subject_change:
            return
        if old.subject != subject:
            raise Denied(ErrorKind.POLICY_DENIED,
                         "the subject must match the certificate being renewed (RFC 7030 §4.2.2)")
        try:
            ext = old.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            previous = {str(i) for i in san_identifiers(ext.value)}
        except x509.ExtensionNotFound:
            previous = set()
        # A certificate issued before CN names joined the SANs: its CN counts as one.
        for attr in old.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            if isinstance(attr.value, str) and (named := subject_cn_identifier(attr.value)):
                previous.add(str(named))
        if previous != {str(i) for i in sans}:
            raise Denied(ErrorKind.POLICY_DENIED,
                         "the subjectAltNames must match the certificate being renewed")

    @staticmethod
    def _validity(request: EnrollmentRequest, profile: ProfileConfig,
                  now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        rules = profile.validity
        not_before = now - rules.backdate
        if request.requested_not_before and request.requested_not_before > now:
            not_before = request.requested_not_before
        start = max(now, not_before)
        not_after = start + rules.default
        if request.requested_not_after is not None:
            if request.requested_not_after <= start:
                raise Denied(ErrorKind.POLICY_DENIED, "the requested notAfter is in the past")
            not_after = request.requested_not_after
        if not_after - start > rules.max:
            raise Denied(ErrorKind.POLICY_DENIED,
                         f"requested validity exceeds this profile's maximum of {rules.max.days} days")
        return not_before.replace(microsecond=0), not_after.replace(microsecond=0)

    @staticmethod
    def _key_usage(csr: x509.CertificateSigningRequest, profile: ProfileConfig) -> frozenset[str]:
        key = csr.public_key()
        is_rsa = isinstance(key, rsa.RSAPublicKey)
        if profile.key_usage is None:
            return frozenset({"digital_signature", "key_encipherment"} if is_rsa
                             else {"digital_signature"})
        usages = set(profile.key_usage)
        if not is_rsa:
            # RFC 8813 / RFC 8410: encipherment is meaningless for EC and EdDSA keys.
            usages -= {"key_encipherment", "data_encipherment"}
        if not isinstance(key, ec.EllipticCurvePublicKey):
            usages -= {"key_agreement"}
        return frozenset(usages or {"digital_signature"})


# -- names a certificate-authenticated EST client may request --------------------------


def certificate_names(cert: x509.Certificate) -> list[str]:
    """A certificate's CN values and SAN values (DNS, IP, email, URI), lower-cased."""
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names += [i.value for i in san_identifiers(ext.value)]
    except (x509.ExtensionNotFound, ValueError):
        pass
    return sorted({name.lower() for name in names})


def check_client_cert_names(request: EnrollmentRequest, profile: ProfileConfig,
                            subject: x509.Name, sans: tuple[Identifier, ...]) -> str:
    """``est.client_cert_names``: with ``match`` (the default) an EST client that
    authenticated with a certificate may ask only for names that certificate carries
    (each subject CN and each SAN must be one of its CN or SAN values); ``any`` lifts
    this.  A renewal is held to the renewed certificate's names by ``_check_renewal``
    instead.  The EST adapter puts the certificate's names in the principal's
    ``cert_names`` attribute.  Returns the line ``policy explain`` prints."""
    rule = profile.est.client_cert_names
    principal = request.principal
    if request.protocol is not Protocol.EST or principal.kind is not PrincipalKind.CLIENT_CERT:
        return (f"EST client-certificate names rule: {rule} (applies to EST clients "
                "authenticated by a certificate)")
    if rule == "any":
        return "EST client-certificate names rule: any (est.client_cert_names)"
    if request.operation in (Operation.RENEW, Operation.REKEY):
        # The renewal check compares the names with the certificate being renewed.
        return "EST client-certificate names rule: match — by the renewal check"
    raw = principal.attributes.get("cert_names")
    if raw is None:
        raise Denied(ErrorKind.FORBIDDEN, "no client certificate to compare the requested "
                     "names with (est.client_cert_names: match)")
    own = set(json.loads(raw))
    wanted = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    wanted += [identifier.value for identifier in sans]
    for name in wanted:
        if name.lower() not in own:
            raise Denied(ErrorKind.POLICY_DENIED,
                         f"{name!r} is not a name of the client certificate "
                         "(est.client_cert_names: match)")
    return ("EST client-certificate names rule: match — requested names are among the "
            "client certificate's: " + (", ".join(sorted(own)) or "(none)"))
