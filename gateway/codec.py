"""Serialisation of model values for the database (JSON-safe) and back."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.name import _ASN1Type

from gateway.errors import ErrorKind
from gateway.model import Decision, Identifier, IdentifierType, Outcome


def identifier_from_text(text: str) -> Identifier:
    kind, _, value = text.partition(":")
    return Identifier(IdentifierType(kind), value)


def name_to_der(name: x509.Name) -> bytes:
    return name.public_bytes()


def name_from_der(der: bytes) -> x509.Name:
    """Rebuild a cryptography Name from DER, keeping each attribute's string type.

    cryptography has no DER loader for a bare Name; asn1crypto parses it.
    """
    parsed = asn1_x509.Name.load(der)
    rdns = []
    for rdn in parsed.chosen:
        attributes = []
        for attribute in rdn:
            oid = x509.ObjectIdentifier(attribute["type"].dotted)
            value = attribute["value"]
            inner = value.chosen if hasattr(value, "chosen") else value
            tag = getattr(inner, "tag", None)
            try:
                asn1_type = _ASN1Type(tag) if tag is not None else None
            except ValueError:
                asn1_type = None
            text = inner.native if isinstance(inner.native, str) else str(inner.native)
            if asn1_type is None:
                attributes.append(x509.NameAttribute(oid, text))
            else:
                attributes.append(x509.NameAttribute(oid, text, asn1_type))
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns)


def decision_to_json(decision: Decision, denial_kind: ErrorKind | None) -> dict[str, Any]:
    return {
        "outcome": decision.outcome.value,
        "reason": decision.reason,
        "profile": decision.profile,
        "backend": decision.backend,
        "fallback_backend": decision.fallback_backend,
        "template": decision.template,
        "not_before": decision.not_before.isoformat() if decision.not_before else None,
        "not_after": decision.not_after.isoformat() if decision.not_after else None,
        "subject": base64.b64encode(name_to_der(decision.subject)).decode(),
        "sans": [str(i) for i in decision.sans],
        "key_usage": sorted(decision.key_usage),
        "extended_key_usage": list(decision.extended_key_usage),
        "denial_kind": denial_kind.value if denial_kind else None,
    }


def decision_from_json(data: dict[str, Any]) -> Decision:
    def when(value: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value) if value else None

    return Decision(
        outcome=Outcome(data["outcome"]),
        reason=data["reason"],
        profile=data["profile"],
        backend=data["backend"],
        fallback_backend=data.get("fallback_backend"),
        template=data.get("template"),
        not_before=when(data.get("not_before")),
        not_after=when(data.get("not_after")),
        subject=name_from_der(base64.b64decode(data["subject"])),
        sans=tuple(identifier_from_text(s) for s in data["sans"]),
        key_usage=frozenset(data["key_usage"]),
        extended_key_usage=tuple(data["extended_key_usage"]),
    )


def denial_kind_of(data: dict[str, Any] | None) -> ErrorKind:
    if data and data.get("denial_kind"):
        return ErrorKind(data["denial_kind"])
    return ErrorKind.POLICY_DENIED
