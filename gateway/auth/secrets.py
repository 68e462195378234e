"""Hashing of passwords and one-time secrets (scrypt, RFC 7914, from the stdlib).

Stored form: ``scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>``; verification is constant
time.  High-entropy machine secrets (API tokens, challenges) use a cheaper cost.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# OWASP Password Storage Cheat Sheet's scrypt parameters for human passwords: N = 2**17,
# r = 8, p = 1 (128 MiB, a few hundred ms; docs/security.md, rule 8).  Hashes made with
# a lower cost still verify and are re-hashed at the next successful login.
PASSWORD_COST = (17, 8, 1)
TOKEN_COST = (10, 8, 1)  # for 256-bit random secrets brute force is not the threat
# scrypt needs 128 * r * N bytes (128 MiB at PASSWORD_COST); OpenSSL refuses above maxmem.
_MAXMEM = 2**28


def hash_secret(secret: str, *, cost: tuple[int, int, int] = PASSWORD_COST) -> str:
    log_n, r, p = cost
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**log_n, r=r, p=p, dklen=32,
                            maxmem=_MAXMEM)
    return "$".join(["scrypt", str(log_n), str(r), str(p),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, log_n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        digest = hashlib.scrypt(secret.encode(), salt=salt, n=2 ** int(log_n), r=int(r),
                                p=int(p), dklen=len(expected), maxmem=_MAXMEM)
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


def needs_rehash(stored: str, *, cost: tuple[int, int, int] = PASSWORD_COST) -> bool:
    """Whether ``stored`` was hashed below ``cost`` (re-hash it once the secret is known)."""
    try:
        scheme, log_n, r, p, _salt, _digest = stored.split("$")
        return scheme != "scrypt" or (int(log_n), int(r), int(p)) < cost
    except ValueError:
        return True


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
