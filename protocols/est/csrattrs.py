"""``/csrattrs`` (RFC 7030 §4.5): what the server wants in a CSR, built from the profile.

CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID
AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }

Decisions where the RFC is loose (RFC 7030 §4.5.2 examples, RFC 8951 §4):
- EC key: ``Attribute(id-ecPublicKey, {curve OID})``; RSA: ``Attribute(rsaEncryption,
  {INTEGER bits})``; Ed25519: the OID ``id-Ed25519``.
- required SAN kinds: the OID ``id-ce-subjectAltName`` (clients cannot be told the kind).
- channel binding on: the OID ``challengePassword`` (RFC 7030 §3.5).
"""

from __future__ import annotations

from asn1crypto import core

from gateway.protocol_settings.est import EstProfileSettings

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_ED25519 = "1.3.101.112"
OID_SAN = "2.5.29.17"
OID_CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"  # noqa: S105 - an OID
CURVES = {"ec-p256": "1.2.840.10045.3.1.7", "ec-p384": "1.3.132.0.34"}
SIGNATURES = {"ec-p256": "1.2.840.10045.4.3.2", "ec-p384": "1.2.840.10045.4.3.3"}


class _Values(core.SetOf):  # type: ignore[misc]
    _child_spec = core.Any


class Attribute(core.Sequence):  # type: ignore[misc]
    _fields = [("type", core.ObjectIdentifier), ("values", _Values)]


class AttrOrOID(core.Choice):  # type: ignore[misc]
    _alternatives = [("oid", core.ObjectIdentifier), ("attribute", Attribute)]


class CsrAttrs(core.SequenceOf):  # type: ignore[misc]
    _child_spec = AttrOrOID


def _attribute(oid: str, value: core.Asn1Value) -> AttrOrOID:
    return AttrOrOID(name="attribute", value=Attribute({
        "type": oid, "values": [core.Any.load(value.dump())]}))


def _oid(oid: str) -> AttrOrOID:
    return AttrOrOID(name="oid", value=core.ObjectIdentifier(oid))


def build(settings: EstProfileSettings) -> bytes | None:
    """The DER CsrAttrs for a profile, or None when there is nothing to ask for."""
    items: list[AttrOrOID] = []
    wanted = settings.csrattrs
    key_type = wanted.key_type
    if key_type in CURVES:
        items.append(_attribute(OID_EC_PUBLIC_KEY, core.ObjectIdentifier(CURVES[key_type])))
        items.append(_oid(SIGNATURES[key_type]))
    elif key_type is not None and key_type.startswith("rsa-"):
        items.append(_attribute(OID_RSA, core.Integer(int(key_type.removeprefix("rsa-")))))
    elif key_type == "ed25519":
        items.append(_oid(OID_ED25519))
    if wanted.required_sans:
        items.append(_oid(OID_SAN))
    if settings.channel_binding:
        items.append(_oid(OID_CHALLENGE_PASSWORD))
    items.extend(_oid(oid) for oid in wanted.extra_oids)
    if not items:
        return None
    return bytes(CsrAttrs(items).dump())


def parse(der: bytes) -> list[str | tuple[str, list[bytes]]]:
    """Decode CsrAttrs (for tests and tools): OIDs, or (OID, DER values) attributes."""
    out: list[str | tuple[str, list[bytes]]] = []
    for item in CsrAttrs.load(der):
        if item.name == "oid":
            out.append(item.chosen.dotted)
        else:
            out.append((item.chosen["type"].dotted,
                        [bytes(v.dump()) for v in item.chosen["values"]]))
    return out
