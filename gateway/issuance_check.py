"""A remote CA is never trusted to enforce the gateway's policy (docs/security.md, rule 4).

Two pure checks, one on each side of a backend call:

- ``requested_extension_problems``: before any backend is asked, the extensions a CSR
  requests must stay within the decision.  Some CAs copy them (Vault ``sign-verbatim``)
  and some sign the CSR as sent (ADCS web enrollment), so anything beyond the decision
  is refused, never silently dropped.  Tolerated: subjectAltName (its names are the
  policy's to judge), keyUsage and extendedKeyUsage that are subsets of the decision's,
  basicConstraints CA:FALSE and subjectKeyIdentifier.
- ``check_issued``: every certificate a backend returns is compared with the decision —
  names, public key, key usage, EKU, basicConstraints, nameConstraints, other extensions,
  validity — and the list of violations (empty: acceptable) is returned.

``names_mismatch`` serves backends that sign the CSR as sent: the CSR's names must be the
decided ones, or the CA would issue names the policy did not decide.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections import Counter

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from gateway.errors import ErrorKind, GatewayError
from gateway.model import (
    Decision,
    EnrollmentRequest,
    Identifier,
    IdentifierType,
    IssuedCertificate,
    san_identifiers,
)

# Clock differences between the gateway and a CA, and CA back-dating (ADCS: 10 minutes).
SKEW = dt.timedelta(minutes=15)

_KEY_USAGES = ("digital_signature", "content_commitment", "key_encipherment",
               "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")
_EKU_LABELS = {
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string: "anyExtendedKeyUsage",
}
MS_SID = "1.3.6.1.4.1.311.25.2"  # szOID_NTDS_CA_SECURITY_EXT (KB5014754)
MS_TEMPLATE_NAME = "1.3.6.1.4.1.311.20.2"
MS_TEMPLATE_INFO = "1.3.6.1.4.1.311.21.7"
MS_APPLICATION_POLICIES = "1.3.6.1.4.1.311.21.10"  # Windows treats these as EKUs
_EXTENSION_LABELS = {
    ExtensionOID.NAME_CONSTRAINTS.dotted_string: "nameConstraints",
    ExtensionOID.POLICY_CONSTRAINTS.dotted_string: "policyConstraints",
    ExtensionOID.POLICY_MAPPINGS.dotted_string: "policyMappings",
    ExtensionOID.INHIBIT_ANY_POLICY.dotted_string: "inhibitAnyPolicy",
    ExtensionOID.CERTIFICATE_POLICIES.dotted_string: "certificatePolicies",
    ExtensionOID.TLS_FEATURE.dotted_string: "TLS feature (must-staple)",
    ExtensionOID.OCSP_NO_CHECK.dotted_string: "OCSP no-check",
    ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES.dotted_string: "subjectDirectoryAttributes",
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS.dotted_string: "authorityInfoAccess",
    ExtensionOID.CRL_DISTRIBUTION_POINTS.dotted_string: "cRLDistributionPoints",
    MS_SID: "Microsoft SID (szOID_NTDS_CA_SECURITY_EXT)",
    MS_TEMPLATE_NAME: "Microsoft certificate template name",
    MS_TEMPLATE_INFO: "Microsoft certificate template",
    MS_APPLICATION_POLICIES: "Microsoft application policies",
}
# What a CA may add to a leaf on its own: identifiers of the key and the CA, where to find
# the CA and its revocation status, policies, CT, and ADCS's template markers.
_CA_ADDED = {
    ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS.dotted_string,
    ExtensionOID.CRL_DISTRIBUTION_POINTS.dotted_string,
    ExtensionOID.FRESHEST_CRL.dotted_string,
    ExtensionOID.CERTIFICATE_POLICIES.dotted_string,
    ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS.dotted_string,
    MS_TEMPLATE_NAME,
    MS_TEMPLATE_INFO,
}


class BackendPolicyViolation(GatewayError):
    """A backend returned a certificate outside the decision; ``detail`` is client-safe."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__(ErrorKind.BACKEND_REJECTED,
                         "the CA issued a certificate that does not match the policy decision; "
                         "it was refused and not delivered")
        self.violations = violations


def extension_label(oid: x509.ObjectIdentifier) -> str:
    dotted = oid.dotted_string
    label = _EXTENSION_LABELS.get(dotted)
    return f"{label} ({dotted})" if label else f"extension {dotted}"


def eku_label(dotted: str) -> str:
    return _EKU_LABELS.get(dotted, dotted)


def key_usages(usage: x509.KeyUsage) -> set[str]:
    """The usages set in a KeyUsage, as cryptography names them (encipher/decipher_only
    only mean something with key_agreement, and only then may be read)."""
    names = {name for name in _KEY_USAGES if getattr(usage, name)}
    if usage.key_agreement:
        names |= {name for name in ("encipher_only", "decipher_only") if getattr(usage, name)}
    return names


# -- before the backend ----------------------------------------------------------------


def requested_extension_problems(csr: x509.CertificateSigningRequest,
                                 key_usage: frozenset[str],
                                 extended_key_usage: tuple[str, ...]) -> list[str]:
    """Why the CSR's requested extensions go beyond what the decision issues (empty: none)."""
    try:
        extensions = list(csr.extensions)
    except ValueError as exc:
        return [f"the CSR's extensions cannot be parsed: {exc}"]
    problems = []
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName | x509.SubjectKeyIdentifier):
            continue
        if isinstance(value, x509.KeyUsage):
            extra = key_usages(value) - key_usage
            if extra:
                problems.append(f"the CSR asks for key usage {', '.join(sorted(extra))}, which "
                                f"this profile does not issue (allowed: "
                                f"{', '.join(sorted(key_usage))})")
        elif isinstance(value, x509.ExtendedKeyUsage):
            asked = [oid.dotted_string for oid in value]
            extra_ekus = [eku_label(o) for o in asked if o not in extended_key_usage]
            if extra_ekus:
                problems.append(f"the CSR asks for extended key usage {', '.join(extra_ekus)}, "
                                f"which this profile does not issue (allowed: "
                                f"{', '.join(map(eku_label, extended_key_usage)) or 'none'})")
        elif isinstance(value, x509.BasicConstraints):
            if value.ca:
                problems.append("the CSR asks for a CA certificate (basicConstraints CA:TRUE)")
        else:
            problems.append(f"the CSR asks for the {extension_label(ext.oid)} extension, which "
                            f"this profile does not issue")
    return problems


def names_mismatch(csr: x509.CertificateSigningRequest, decision: Decision, *,
                   signer: str) -> str | None:
    """For a CA that signs the CSR's names as sent: why they differ from the decision.

    The one tolerated difference: a SAN the policy derived from a CN (a CN that is a host
    name or address) may be missing from the CSR; ``check_issued`` accepts its absence.
    """
    if csr.subject != decision.subject:
        return (f"{signer} would issue the CSR's subject {csr.subject.rfc4514_string()!r}, "
                f"but the policy decided {decision.subject.rfc4514_string()!r}")
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        asked = set(san_identifiers(ext.value))
    except x509.ExtensionNotFound:
        asked = set()
    except ValueError:
        return "the CSR's subjectAltName cannot be parsed"
    decided = set(decision.sans)
    if asked - decided or decided - asked - set(_cn_names(decision.subject)):
        return (f"{signer} would issue the CSR's subjectAltNames, which differ from those the "
                f"policy decided")
    return None


# PKCS #10 attributes (RFC 2986 §4.1) a CSR may carry.  ADCS web enrollment honours more
# (1.3.6.1.4.1.311.13.2.1, enrollment name-value pairs such as ``SAN:upn=…`` under
# EDITF_ATTRIBUTESUBJECTALTNAME2: ESC6), so anything not known to be informational is
# refused.
_TOLERATED_ATTRIBUTES = {
    "1.2.840.113549.1.9.7": "challengePassword",  # SCEP, EST channel binding
    "1.2.840.113549.1.9.14": "extensionRequest",  # vetted extension by extension
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.20": "friendlyName",  # certmonger
    "1.3.6.1.4.1.311.13.2.3": "Microsoft OS version",
    "1.3.6.1.4.1.311.21.20": "Microsoft client information",
    "1.3.6.1.4.1.311.13.2.2": "Microsoft enrollment CSP",
}
_ATTRIBUTE_LABELS = {
    "1.3.6.1.4.1.311.13.2.1": "Microsoft enrollment name-value pairs",
}


def requested_attribute_problems(csr: x509.CertificateSigningRequest) -> list[str]:
    """Why the CSR's attributes go beyond what a CA may see (empty: none).

    Only informational attributes and extensionRequest are tolerated; a CA that signs
    the CSR as sent (ADCS) must never be handed one it acts on.
    """
    try:
        attributes = list(csr.attributes)
    except ValueError as exc:
        return [f"the CSR's attributes cannot be parsed: {exc}"]
    problems = []
    for attribute in attributes:
        dotted = attribute.oid.dotted_string
        if dotted not in _TOLERATED_ATTRIBUTES:
            label = _ATTRIBUTE_LABELS.get(dotted)
            named = f"{label} ({dotted})" if label else dotted
            problems.append(f"the CSR carries the attribute {named}, which the gateway does "
                            f"not pass to a CA")
    return problems


# -- after the backend -----------------------------------------------------------------


def check_issued(issued: IssuedCertificate, decision: Decision, request: EnrollmentRequest,
                 *, now: dt.datetime, max_validity: dt.timedelta | None = None,
                 skew: dt.timedelta = SKEW) -> list[str]:
    """How the certificate a backend returned goes beyond ``decision`` (empty: it does not).

    Names: the subject may lose attributes a CA does not carry (Vault ``sign`` keeps only
    the CN) but never gain or change one, and its CNs are the decided ones; the SANs are
    the decided ones (a SAN derived from a CN may be missing).  The key is the CSR's.  Key
    usage and EKU stay within the decision (an absent EKU means any purpose, so it counts
    as beyond); CA:FALSE or no basicConstraints; no nameConstraints; nothing else but what
    CAs add to any leaf (key identifiers, AIA, CRL DP, policies, SCTs, ADCS template
    markers).  Validity starts no earlier than the decided notBefore and ends no later than
    the decided notAfter or, when the CA chooses validity (ADCS templates, Vault roles),
    ``now`` plus the profile's maximum — each give or take ``skew``.
    """
    try:
        cert = x509.load_der_x509_certificate(issued.der)
        extensions = list(cert.extensions)
        # Read everything used below now: cryptography parses lazily, and a CA's
        # certificate may break any part (a duplicated extension, an unsupported
        # general name, an unknown key algorithm, an invalid version).
        _ = cert.subject.rdns, cert.public_key(), cert.not_valid_after_utc
        _ = [list(ext.value) for ext in extensions
             if isinstance(ext.value, x509.SubjectAlternativeName | x509.ExtendedKeyUsage)]
    except Exception as exc:  # noqa: BLE001 - whatever breaks, it is not delivered
        return [f"the certificate cannot be read: {type(exc).__name__}: {exc}"]
    violations: list[str] = []
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != request.csr.public_key().public_bytes(*spki):
        violations.append("the certificate's public key is not the CSR's")
    violations += _subject_violations(cert.subject, decision.subject)
    seen_eku = False
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            violations += _san_violations(value, decision)
        elif isinstance(value, x509.BasicConstraints):
            if value.ca:
                violations.append("basicConstraints CA:TRUE (a CA certificate)")
        elif isinstance(value, x509.KeyUsage):
            extra = key_usages(value) - decision.key_usage
            if extra:
                violations.append(f"key usage {', '.join(sorted(extra))} beyond the decision")
        elif isinstance(value, x509.ExtendedKeyUsage):
            seen_eku = True
            extra_ekus = [eku_label(o.dotted_string) for o in value
                          if o.dotted_string not in decision.extended_key_usage]
            if extra_ekus:
                violations.append(f"extended key usage {', '.join(extra_ekus)} beyond the "
                                  f"decision")
        elif ext.oid.dotted_string == MS_APPLICATION_POLICIES:
            violations += _application_policy_violations(ext.value, decision)
        elif ext.oid.dotted_string not in _CA_ADDED:
            violations.append(f"{extension_label(ext.oid)} not in the decision")
    if not seen_eku and decision.extended_key_usage:
        violations.append("no extendedKeyUsage (any purpose) where the decision allows only "
                          + ", ".join(map(eku_label, decision.extended_key_usage)))
    violations += _validity_violations(cert, decision, now=now, max_validity=max_validity,
                                       skew=skew)
    return violations


def _subject_violations(issued: x509.Name, decided: x509.Name) -> list[str]:
    def attributes(name: x509.Name) -> Counter[tuple[str, str]]:
        return Counter((a.oid.dotted_string, a.value if isinstance(a.value, str)
                        else a.value.hex()) for a in name)

    out = []
    extra = attributes(issued) - attributes(decided)
    if extra:
        out.append(f"subject {issued.rfc4514_string()!r} has attributes the policy did not "
                   f"decide ({decided.rfc4514_string()!r})")
    if sorted(_cn_values(issued)) != sorted(_cn_values(decided)):
        out.append(f"subject common name differs from the decided "
                   f"{decided.rfc4514_string()!r}")
    return out


def _san_violations(value: x509.SubjectAlternativeName, decision: Decision) -> list[str]:
    kinds = {type(name).__name__ for name in value
             if not isinstance(name, x509.DNSName | x509.IPAddress | x509.RFC822Name
                               | x509.UniformResourceIdentifier)}
    if any(isinstance(n, x509.IPAddress) and not _is_address(n) for n in value):
        kinds.add("IPAddress network")
    out = [f"subjectAltName of type {kind} not in the decision" for kind in sorted(kinds)]
    issued = set(san_identifiers(value))
    decided = set(decision.sans)
    extra = issued - decided
    if extra:
        out.append("subjectAltNames not in the decision: " + ", ".join(sorted(map(str, extra))))
    missing = decided - issued - set(_cn_names(decision.subject))
    if missing:
        out.append("decided subjectAltNames missing: " + ", ".join(sorted(map(str, missing))))
    return out


def _validity_violations(cert: x509.Certificate, decision: Decision, *, now: dt.datetime,
                         max_validity: dt.timedelta | None, skew: dt.timedelta) -> list[str]:
    out = []
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if decision.not_before is not None and not_before < decision.not_before - skew:
        out.append(f"notBefore {not_before.isoformat()} is before the decided "
                   f"{decision.not_before.isoformat()}")
    latest = decision.not_after
    if max_validity is not None:
        latest = max(latest or now, now + max_validity)
    if latest is not None and not_after > latest + skew:
        out.append(f"notAfter {not_after.isoformat()} is after the latest the profile allows "
                   f"({latest.isoformat()})")
    if not_after <= not_before:
        out.append("the validity period is empty")
    return out


def _application_policy_violations(value: x509.ExtensionType, decision: Decision) -> list[str]:
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    try:
        oids = policy_oids(raw)
    except ValueError:
        return ["Microsoft application policies cannot be parsed"]
    extra = [eku_label(o) for o in oids if o not in decision.extended_key_usage]
    if extra:
        return [f"Microsoft application policies {', '.join(extra)} beyond the decision"]
    return []


def policy_oids(der: bytes) -> list[str]:
    """The policy identifiers of a ``SEQUENCE OF PolicyInformation`` (RFC 5280 §4.2.1.4;
    Microsoft's application policies share the syntax)."""
    outer, rest = _tlv(der, 0x30)
    if rest:
        raise ValueError("trailing data")
    oids = []
    while outer:
        info, outer = _tlv(outer, 0x30)
        oid, _ = _tlv(info, 0x06)
        oids.append(_oid_text(oid))
    return oids


def _tlv(data: bytes, tag: int) -> tuple[bytes, bytes]:
    """One DER element of the expected tag: (content, what follows)."""
    if len(data) < 2 or data[0] != tag:
        raise ValueError("unexpected DER tag")
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or len(data) < 2 + count:
            raise ValueError("bad DER length")
        length, offset = int.from_bytes(data[2:2 + count], "big"), 2 + count
    if len(data) < offset + length:
        raise ValueError("truncated DER")
    return data[offset:offset + length], data[offset + length:]


def _oid_text(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise ValueError("bad OID")
    arcs, value = [], 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _cn_values(name: x509.Name) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _cn_names(subject: x509.Name) -> list[Identifier]:
    """The SANs a subject's CNs stand for (the policy adds these to the SANs)."""
    out = []
    for cn in _cn_values(subject):
        try:
            out.append(Identifier(IdentifierType.IP, str(ipaddress.ip_address(cn))))
        except ValueError:
            out.append(Identifier(IdentifierType.DNS, cn))
    return out


def _is_address(name: x509.IPAddress) -> bool:
    return isinstance(name.value, ipaddress.IPv4Address | ipaddress.IPv6Address)


__all__ = ["SKEW", "BackendPolicyViolation", "check_issued", "names_mismatch",
           "requested_attribute_problems", "requested_extension_problems"]
