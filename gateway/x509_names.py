"""Names for X.509 OIDs used in configuration and policy: extended key usages (RFC 5280
§4.2.1.12) and subject attributes (RFC 4514 §3 short names).

A leaf of the core: configuration validates names with it and the policy engine turns them
into OIDs, so neither has to import the other.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_EKU_NAMES = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING.dotted_string,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING.dotted_string,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string,
}
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d*))+$")

_SUBJECT_ATTRIBUTES = {
    "CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS, "serialNumber": NameOID.SERIAL_NUMBER,
    "DC": NameOID.DOMAIN_COMPONENT, "UID": NameOID.USER_ID,
    "STREET": NameOID.STREET_ADDRESS, "postalCode": NameOID.POSTAL_CODE,
    "title": NameOID.TITLE, "GN": NameOID.GIVEN_NAME, "surname": NameOID.SURNAME,
}
_ATTRIBUTE_BY_NAME = {name.lower(): oid for name, oid in _SUBJECT_ATTRIBUTES.items()}
_ATTRIBUTE_LABEL = {oid.dotted_string: name for name, oid in _SUBJECT_ATTRIBUTES.items()}


def eku_oid(name: str) -> str:
    """'serverAuth' (RFC 5280 §4.2.1.12 name) or a dotted OID → dotted OID."""
    if name in _EKU_NAMES:
        return _EKU_NAMES[name]
    if _OID.match(name):
        return name
    raise ValueError(f"unknown extended key usage {name!r} (a name like serverAuth or an OID)")


def subject_attribute_oid(name: str) -> x509.ObjectIdentifier:
    """'CN', 'OU', ... (RFC 4514 names, case-insensitive) or a dotted OID → the OID."""
    if name.lower() in _ATTRIBUTE_BY_NAME:
        return _ATTRIBUTE_BY_NAME[name.lower()]
    if _OID.match(name):
        return x509.ObjectIdentifier(name)
    raise ValueError(f"unknown subject attribute {name!r} (one of "
                     f"{', '.join(_SUBJECT_ATTRIBUTES)}, or a dotted OID)")


def attribute_label(dotted: str) -> str:
    """The RFC 4514 short name of a subject attribute OID, or the dotted OID itself."""
    return _ATTRIBUTE_LABEL.get(dotted, dotted)
