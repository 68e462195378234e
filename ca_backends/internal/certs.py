"""Certificate profiles of the internal CA: root, issuing CA and end-entity (RFC 5280 §4).

Pure functions: they build and sign what they are given.  Choosing the issuer, validity
and names is the caller's business.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from ca_backends.base import BackendRejected, IssuerInfo
from ca_backends.internal.keys import CaPrivateKey, public_key_bits, signature_hash
from gateway.model import Identifier, IdentifierType

LeafPublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

# Every KeyUsage bit, by the keyword cryptography's KeyUsage takes.
_KU_NAMES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)
# What an end-entity key of each algorithm may assert: RSA RFC 3279 §2.3.1 (keyAgreement
# is not among them), ECDSA/ECDH RFC 5480 §3 (never key or data encipherment), EdDSA
# RFC 8410 §5.  keyCertSign and cRLSign are for CAs only (RFC 5280 §4.2.1.3).
_RSA_USAGES = frozenset(
    {"digital_signature", "content_commitment", "key_encipherment", "data_encipherment"}
)
_EC_USAGES = frozenset(
    {"digital_signature", "content_commitment", "key_agreement", "encipher_only", "decipher_only"}
)
_EDDSA_USAGES = frozenset({"digital_signature", "content_commitment"})


def random_serial() -> int:
    """A positive, non-zero serial with 126 random bits, exactly 16 octets in DER.

    Bit 126 is always set and bit 127 never, so the INTEGER needs no leading zero octet
    and never shrinks (RFC 5280 §4.1.2.2: positive, at most 20 octets).
    """
    return secrets.randbits(127) | (1 << 126)


def ca_name(common_name: str, organization: str | None) -> x509.Name:
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def build_root(
    key: CaPrivateKey, subject: x509.Name, not_before: dt.datetime, not_after: dt.datetime
) -> x509.Certificate:
    """A self-signed root: cA, keyCertSign + cRLSign, SKI, and AKI = SKI.

    The AKI is optional on a self-signed certificate (RFC 5280 §4.2.1.1); it is included
    so chain builders that match AKI to SKI treat every level alike.
    """
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage({"key_cert_sign", "crl_sign"}), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    return builder.sign(key, signature_hash(key))


def build_issuing_ca(
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    subject: x509.Name,
    root: x509.Certificate,
    root_key: CaPrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """An issuing CA under the root: pathLen 0, keyCertSign + cRLSign + digitalSignature.

    digitalSignature lets the issuing CA sign OCSP responses itself (RFC 6960 §4.2.2.2).
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(max(not_before, root.not_valid_before_utc))
        .not_valid_after(min(not_after, root.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage({"digital_signature", "key_cert_sign", "crl_sign"}), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_aki_of(root), critical=False)
    )
    return builder.sign(root_key, signature_hash(root_key))


@dataclass(frozen=True, slots=True)
class SigningIssuer:
    """An issuing CA generation with its decrypted key, ready to sign."""

    info: IssuerInfo
    private_key: CaPrivateKey
    der: bytes
    name_der: bytes  # DER of the subject, hashed into OCSP issuerNameHash
    key_bits: bytes  # subjectPublicKey, hashed into OCSP issuerKeyHash

    @classmethod
    def of(cls, info: IssuerInfo, private_key: CaPrivateKey) -> SigningIssuer:
        certificate = info.certificate
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(
            info=info,
            private_key=private_key,
            der=certificate.public_bytes(serialization.Encoding.DER),
            name_der=certificate.subject.public_bytes(),
            key_bits=public_key_bits(spki),
        )

    @property
    def certificate(self) -> x509.Certificate:
        return self.info.certificate

    @property
    def key_identifier(self) -> bytes:
        return self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.key_identifier

    def matches_cert_id(
        self, algorithm: hashes.HashAlgorithm, name_hash: bytes, key_hash: bytes
    ) -> bool:
        """Whether an OCSP CertID names this issuer (RFC 6960 §4.1.1)."""
        name_digest = hashes.Hash(algorithm)
        name_digest.update(self.name_der)
        key_digest = hashes.Hash(algorithm)
        key_digest.update(self.key_bits)
        return secrets.compare_digest(name_digest.finalize(), name_hash) and (
            secrets.compare_digest(key_digest.finalize(), key_hash)
        )


@dataclass(frozen=True, slots=True)
class LeafUrls:
    """Where relying parties fetch the issuer, OCSP and CRL (RFC 5280 §4.2.1.13, §4.2.2.1)."""

    ca_issuers: str
    ocsp: str
    crl: str

    @classmethod
    def for_issuer(cls, public_http_url: str, backend: str, issuer_id: str) -> LeafUrls:
        base = public_http_url.rstrip("/")
        return cls(
            ca_issuers=f"{base}/ca/{backend}/{issuer_id}.cer",
            ocsp=f"{base}/ocsp/{backend}",
            crl=f"{base}/crl/{backend}/{issuer_id}.crl",
        )


def build_leaf(
    *,
    issuer: SigningIssuer,
    public_key: LeafPublicKey,
    subject: x509.Name,
    sans: Iterable[Identifier],
    not_before: dt.datetime,
    not_after: dt.datetime,
    key_usage: Iterable[str],
    extended_key_usage: Iterable[str],
    urls: LeafUrls,
) -> x509.Certificate:
    """An end-entity certificate (RFC 5280 §4.2); raise BackendRejected if it cannot be.

    Key usages the key's algorithm cannot have are dropped (e.g. keyEncipherment for an
    EC key, RFC 5480 §3), so one profile serves RSA and EC keys alike.  With no key usage
    at all, digitalSignature (plus keyEncipherment for RSA) is used.
    """
    general_names = _general_names(sans)
    if not subject and not general_names:
        raise BackendRejected("a certificate needs a subject or a subject alternative name")
    _check_email_in_san(subject, general_names)
    if not_after <= not_before:
        raise BackendRejected("the validity period is empty (is the issuing CA expiring?)")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(public_key, frozenset(key_usage)), critical=True)
    )
    ekus = _eku_oids(extended_key_usage)
    if ekus:
        # RFC 3161 §2.3: a time-stamping EKU must be critical.
        critical = ExtendedKeyUsageOID.TIME_STAMPING in ekus
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=critical)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
    ).add_extension(_aki_of(issuer.certificate), critical=False)
    if general_names:
        # RFC 5280 §4.2.1.6: critical exactly when the subject is empty.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(general_names), critical=not subject
        )
    builder = builder.add_extension(
        x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp)
                ),
                x509.AccessDescription(
                    AuthorityInformationAccessOID.CA_ISSUERS,
                    x509.UniformResourceIdentifier(urls.ca_issuers),
                ),
            ]
        ),
        critical=False,
    ).add_extension(
        x509.CRLDistributionPoints(
            [
                x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(urls.crl)],
                    relative_name=None,
                    reasons=None,
                    crl_issuer=None,
                )
            ]
        ),
        critical=False,
    )
    return builder.sign(issuer.private_key, signature_hash(issuer.private_key))


def _aki_of(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(names: set[str] | frozenset[str]) -> x509.KeyUsage:
    unknown = names - set(_KU_NAMES)
    if unknown:
        raise BackendRejected(f"unknown key usage {', '.join(sorted(unknown))}")
    flags = {name: name in names for name in _KU_NAMES}
    try:
        return x509.KeyUsage(**flags)
    except ValueError as exc:  # encipher_only / decipher_only without key_agreement
        raise BackendRejected(f"inconsistent key usage: {exc}") from exc


def _leaf_key_usage(public_key: LeafPublicKey, requested: frozenset[str]) -> x509.KeyUsage:
    if isinstance(public_key, rsa.RSAPublicKey):
        allowed = _RSA_USAGES
        default = frozenset({"digital_signature", "key_encipherment"})
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        allowed, default = _EC_USAGES, frozenset({"digital_signature"})
    else:
        allowed, default = _EDDSA_USAGES, frozenset({"digital_signature"})
    if not requested:
        return _key_usage(default)
    _key_usage(requested)  # refuses unknown names before they are filtered away
    if requested & {"key_cert_sign", "crl_sign"}:
        raise BackendRejected("keyCertSign and cRLSign are for CA certificates only")
    usable = requested & allowed
    if not usable:
        raise BackendRejected(
            f"none of the key usages {', '.join(sorted(requested))} suits this key type"
        )
    return _key_usage(usable)


def _eku_oids(dotted: Iterable[str]) -> list[x509.ObjectIdentifier]:
    oids: list[x509.ObjectIdentifier] = []
    for value in dotted:
        try:
            oid = x509.ObjectIdentifier(value)
        except ValueError as exc:
            raise BackendRejected(f"{value!r} is not an extended key usage OID") from exc
        if oid not in oids:
            oids.append(oid)
    return oids


def _general_names(sans: Iterable[Identifier]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for identifier in sans:
        name = _general_name(identifier)
        if name not in names:
            names.append(name)
    return names


def _general_name(identifier: Identifier) -> x509.GeneralName:
    try:
        if identifier.type is IdentifierType.DNS:
            return x509.DNSName(identifier.value)
        if identifier.type is IdentifierType.IP:
            return x509.IPAddress(ipaddress.ip_address(identifier.value))
        if identifier.type is IdentifierType.EMAIL:
            return x509.RFC822Name(identifier.value)
        return x509.UniformResourceIdentifier(identifier.value)
    except ValueError as exc:
        # Non-ASCII names: DNS needs A-labels; internationalised mailboxes (RFC 8398)
        # are not issued.
        raise BackendRejected(f"cannot encode subject alternative name {identifier}") from exc


def _check_email_in_san(subject: x509.Name, names: list[x509.GeneralName]) -> None:
    """RFC 5280 §4.1.2.6: an emailAddress in the subject must also be an rfc822Name."""
    mailboxes = {n.value.lower() for n in names if isinstance(n, x509.RFC822Name)}
    for attribute in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        value = attribute.value if isinstance(attribute.value, str) else ""
        if value.lower() not in mailboxes:
            raise BackendRejected("a subject emailAddress must also be a subject alternative name")
