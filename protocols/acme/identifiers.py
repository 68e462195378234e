"""Identifiers in orders (RFC 8555 §7.1.4, §9.7.7; RFC 8738 IP) and CSR matching (§7.4)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.model import Identifier, IdentifierType
from protocols.acme import addresses
from protocols.acme.problems import AcmeProblem, ProblemType, Subproblem, malformed

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _dns_ok(value: str) -> str | None:
    """A reason the DNS name is unacceptable, or None."""
    name = value[2:] if value.startswith("*.") else value
    if len(value) > 253 or not name:
        return "name too long or empty"
    if "*" in name:
        return "a wildcard must be the whole leftmost label ('*.')"
    labels = name.split(".")
    if len(labels) < 2 and name != "localhost":
        return "the name must have at least two labels"
    for label in labels:
        if not _LABEL.match(label):
            return f"label {label!r} is not a valid LDH label"
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return "an IP address must use the 'ip' identifier type (RFC 8738)"
    if labels[-1].isdigit():
        return "the top-level label must not be all digits"
    return None


def parse_order_identifiers(raw: Any, *, limit: int,
                            allow: Iterable[addresses.IPNetwork] = ()) -> list[Identifier]:
    """Validate newOrder ``identifiers``; subproblems name each bad one.

    An IP identifier that validation may not reach (``addresses.allowed``: loopback,
    private, link-local, metadata... unless ``allow`` opens it) is a rejectedIdentifier.
    """
    opened = tuple(allow)
    if not isinstance(raw, list) or not raw:
        raise malformed("'identifiers' must be a non-empty list")
    if len(raw) > limit:
        raise AcmeProblem(ProblemType.REJECTED_IDENTIFIER,
                          f"at most {limit} identifiers per order")
    found: list[Identifier] = []
    problems: list[Subproblem] = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) \
                or not isinstance(entry.get("value"), str):
            raise malformed("each identifier needs a string 'type' and 'value'")
        kind, value = entry["type"], entry["value"]
        shown = {"type": kind, "value": value[:255]}
        if kind == "dns" and _is_ip(value):
            kind = "ip"  # lego 4.9 sends IP addresses as dns identifiers; accept them as ip
        if kind == "dns":
            reason = _dns_ok(value.lower())
            if value != value.lower() and reason is None:
                value = value.lower()
            if reason:
                problems.append(Subproblem(ProblemType.REJECTED_IDENTIFIER, reason, shown))
                continue
            identifier = Identifier(IdentifierType.DNS, value)
        elif kind == "ip":
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                problems.append(Subproblem(ProblemType.MALFORMED, "not an IP address", shown))
                continue
            identifier = Identifier(IdentifierType.IP, str(address))
            if not addresses.allowed(address, opened):
                problems.append(Subproblem(ProblemType.REJECTED_IDENTIFIER,
                                           "the address is not publicly routable", shown))
                continue
        else:
            problems.append(Subproblem(ProblemType.UNSUPPORTED_IDENTIFIER,
                                       f"identifier type {kind!r} is not supported", shown))
            continue
        if identifier not in found:
            found.append(identifier)
    if problems:
        kind = problems[0].type if len(problems) == 1 else ProblemType.COMPOUND
        if len({p.type for p in problems}) == 1:
            kind = problems[0].type
        raise AcmeProblem(kind, "; ".join(f"{p.identifier['value']}: {p.detail}" for p in problems),
                          subproblems=problems)
    return sorted(found)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def identifier_json(identifier: Identifier) -> dict[str, str]:
    return {"type": identifier.type.value, "value": identifier.value}


def identifier_from_json(value: dict[str, str]) -> Identifier:
    return Identifier(IdentifierType(value["type"]), value["value"])


def csr_identifiers(csr: x509.CertificateSigningRequest) -> set[Identifier]:
    """The DNS and IP names a CSR asks for: SANs plus a subject CN (RFC 8555 §7.4)."""
    out: set[Identifier] = set()
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        ext = None
    except ValueError:
        raise AcmeProblem(ProblemType.BAD_CSR, "the CSR's extensions cannot be parsed") from None
    if ext is not None:
        for name in ext.value:
            if isinstance(name, x509.DNSName) and _is_ip(name.value):
                out.add(Identifier(IdentifierType.IP, name.value))  # lego 4.9's IP SANs
            elif isinstance(name, x509.DNSName):
                out.add(Identifier(IdentifierType.DNS, name.value))
            elif isinstance(name, x509.IPAddress) and not isinstance(
                    name.value, ipaddress.IPv4Network | ipaddress.IPv6Network):
                out.add(Identifier(IdentifierType.IP, str(name.value)))
            else:
                raise AcmeProblem(ProblemType.BAD_CSR,
                                  f"the CSR asks for a {type(name).__name__}, which ACME "
                                  "orders cannot authorize")
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = str(attr.value)
        try:
            out.add(Identifier(IdentifierType.IP, str(ipaddress.ip_address(value))))
        except ValueError:
            out.add(Identifier(IdentifierType.DNS, value))
    return out


def check_csr_matches(csr: x509.CertificateSigningRequest, ordered: list[Identifier]) -> None:
    """The CSR must name exactly the order's identifiers, no more, no fewer."""
    asked = csr_identifiers(csr)
    wanted = set(ordered)
    if asked == wanted:
        return
    missing = sorted(str(i) for i in wanted - asked)
    extra = sorted(str(i) for i in asked - wanted)
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing))
    if extra:
        parts.append("not in the order: " + ", ".join(extra))
    raise AcmeProblem(ProblemType.BAD_CSR,
                      "the CSR's identifiers do not match the order (" + "; ".join(parts) + ")")


def check_csr_subject(csr: x509.CertificateSigningRequest, ordered: list[Identifier]) -> None:
    """An ACME certificate's subject is empty or one CN naming an ordered identifier.

    RFC 8555 §7.4: the CA may refuse a CSR whose fields it will not honour.  Like Let's
    Encrypt, nothing an order did not validate (O, OU, C, a second CN...) reaches the
    certificate: such a CSR is refused with badCSR rather than trimmed.
    """
    common_names = []
    for attr in csr.subject:
        if attr.oid != NameOID.COMMON_NAME:
            raise AcmeProblem(ProblemType.BAD_CSR,
                              f"the CSR's subject may hold only a CN naming one of the order's "
                              f"identifiers; it also asks for {attr.rfc4514_attribute_name}")
        common_names.append(str(attr.value))
    if len(common_names) > 1:
        raise AcmeProblem(ProblemType.BAD_CSR, "the CSR's subject may hold only one CN")
    for value in common_names:
        if _as_identifier(value) not in ordered:
            raise AcmeProblem(ProblemType.BAD_CSR,
                              f"the CSR's CN {value[:255]!r} is not one of the order's identifiers")


def _as_identifier(value: str) -> Identifier:
    if _is_ip(value):
        return Identifier(IdentifierType.IP, value)
    return Identifier(IdentifierType.DNS, value)
