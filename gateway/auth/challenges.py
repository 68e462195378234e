"""SCEP challenge passwords (RFC 8894 §2.3): one-time (dynamic) and static.

Dynamic challenges live in the credentials table (kind ``scep-challenge``), one row each:
``name`` is the SHA-256 of the challenge (the lookup key; the challenge itself is never
stored), ``uses_left`` counts down atomically (``credentials.consume_use``), ``expires_at``
bounds their life and ``attributes.subject_pattern`` optionally binds them to names: the
pattern must fully match, ignoring case, every name the CSR asks for (each CN, a subject
emailAddress, and every DNS, IP, email and URI subjectAltName), not only the first CN
(issue #10, rule 5).
A challenge is 128 random bits, so an unsalted hash is enough: finding the row by hash
proves knowledge of the challenge, and there is nothing to brute-force.

A static challenge is one secret per profile, configured as an scrypt hash (human-chosen
secrets deserve a slow hash) or read from an environment variable.  Successful scrypt
checks are remembered in-process so a busy profile does not pay ~50 ms per enrollment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session

from gateway.auth.secrets import verify_secret
from gateway.errors import ErrorKind, GatewayError
from gateway.model import Principal, PrincipalKind
from gateway.store import credentials

KIND = "scep-challenge"
_HASH_PREFIX = "sha256$"


@dataclass(frozen=True, slots=True)
class IssuedChallenge:
    """A challenge as handed out: the secret is shown once and never stored."""

    id: str
    secret: str
    profile: str
    expires_at: dt.datetime
    uses: int
    subject_pattern: str | None


def lookup_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_challenge(session: Session, *, profile: str, now: dt.datetime, ttl: dt.timedelta,
                     uses: int = 1, subject_pattern: str | None = None) -> IssuedChallenge:
    """Store a new challenge for ``profile``; ``uses`` enrollments may consume it."""
    if uses < 1:
        raise GatewayError(ErrorKind.MALFORMED, "a challenge needs at least one use")
    if ttl <= dt.timedelta(0):
        raise GatewayError(ErrorKind.MALFORMED, "a challenge needs a positive lifetime")
    if subject_pattern is not None:
        try:
            re.compile(subject_pattern)
        except re.error as exc:
            raise GatewayError(ErrorKind.MALFORMED, f"bad subject pattern: {exc}") from None
    # Hex: every SCEP client and device UI accepts it (some choke on '-', '_' or '+').
    secret = secrets.token_hex(16)
    key = lookup_key(secret)
    attributes = {"subject_pattern": subject_pattern} if subject_pattern else {}
    row = credentials.add(session, kind=KIND, profile=profile, name=key,
                          secret_hash=_HASH_PREFIX + key, now=now, attributes=attributes,
                          uses_left=uses, expires_at=now + ttl)
    return IssuedChallenge(row.id, secret, profile, now + ttl, uses, subject_pattern)


def csr_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """Every name a CSR asks for: CNs, subject emailAddress, DNS/IP/email/URI SANs.

    A subjectAltName of any other type is refused (POLICY_DENIED), as the policy would:
    a pattern cannot vouch for a name it cannot read.
    """
    names = [str(a.value) for a in csr.subject
             if a.oid in (NameOID.COMMON_NAME, NameOID.EMAIL_ADDRESS)]
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    except ValueError:
        raise GatewayError(ErrorKind.BAD_CSR, "the CSR's extensions cannot be parsed") from None
    for name in sans:
        if isinstance(name, x509.DNSName | x509.RFC822Name | x509.UniformResourceIdentifier
                      | x509.IPAddress):
            names.append(str(name.value))
        else:
            raise GatewayError(ErrorKind.POLICY_DENIED,
                               f"subjectAltName of type {type(name).__name__} is not supported")
    return names


def consume_challenge(session: Session, *, profile: str, secret: str, names: Sequence[str],
                      now: dt.datetime) -> Principal:
    """Check a one-time challenge and take one use of it, atomically.

    ``names`` are the CSR's names (``csr_names``); a challenge bound to a pattern needs
    at least one, and the pattern must fully match each.  Raises GatewayError(UNAUTHORIZED)
    for an unknown, expired, used-up or name-mismatched challenge (SCEP answers FAILURE
    badRequest).  The use is taken in the caller's session: it counts only if that
    session commits.
    """
    row = credentials.find(session, kind=KIND, profile=profile, name=lookup_key(secret))
    if row is None or row.disabled:
        raise GatewayError(ErrorKind.UNAUTHORIZED, "unknown challenge password")
    if row.expires_at is not None and row.expires_at <= now:
        raise GatewayError(ErrorKind.UNAUTHORIZED, "the challenge password has expired")
    pattern = (row.attributes or {}).get("subject_pattern")
    # Names compare without case, as DNS names do and as the name rules match (rule 3).
    if pattern and (not names or any(re.fullmatch(pattern, n, re.IGNORECASE) is None
                                     for n in names)):
        raise GatewayError(ErrorKind.UNAUTHORIZED,
                           "the challenge password is not valid for this subject")
    if row.uses_left is not None and not credentials.consume_use(session, row.id):
        raise GatewayError(ErrorKind.UNAUTHORIZED, "the challenge password was already used")
    return Principal(PrincipalKind.SCEP_CHALLENGE, row.id, {"challenge": row.id})


def static_principal(profile: str) -> Principal:
    return Principal(PrincipalKind.SCEP_CHALLENGE, f"static:{profile}", {"challenge": "static"})


def check_static(secret: str, *, stored_hash: str | None, clear_value: str | None) -> bool:
    """A static challenge: against a clear value (from env) or an scrypt hash."""
    if clear_value is not None:
        return hmac.compare_digest(secret.encode(), clear_value.encode())
    if stored_hash is None:
        return False
    return _verify_cached(lookup_key(secret), secret, stored_hash)


def _verify_cached(key: str, secret: str, stored_hash: str) -> bool:
    if (key, stored_hash) in _VERIFIED:
        return True
    ok = verify_secret(secret, stored_hash)
    if ok and len(_VERIFIED) < _VERIFIED_MAX:
        _VERIFIED.add((key, stored_hash))  # only successes of configured secrets: bounded
    return ok


_VERIFIED: set[tuple[str, str]] = set()
_VERIFIED_MAX = 64
