"""JWS (RFC 7515) as ACME uses it (RFC 8555 §6.2): flattened JSON, one signature.

``parse`` checks the structure and the protected header (alg, nonce, url, exactly one of
jwk / kid); ``verify`` checks the signature with the key the header names or the
account's stored key.  Every failure is an ``AcmeProblem`` of the right type.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from protocols.acme.problems import AcmeProblem, ProblemType, malformed

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

ALGORITHMS = ("ES256", "ES384", "RS256", "EdDSA")
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
_EC = {"ES256": ("P-256", ec.SECP256R1, hashes.SHA256, 32),
       "ES384": ("P-384", ec.SECP384R1, hashes.SHA384, 48)}
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_CURVES = {"P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48)}


def b64decode(value: Any, what: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2)."""
    if not isinstance(value, str):
        raise malformed(f"{what} must be a base64url string")
    if not _B64URL.fullmatch(value):
        raise malformed(f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise malformed(f"{what} is not valid base64url") from None


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


MAX_JSON_DEPTH = 32  # ACME objects nest a few levels; a deeper body is an attack
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _json_depth(data: bytes) -> int:
    """How deep the arrays and objects of ``data`` nest, strings ignored."""
    depth = deepest = 0
    for bracket in _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object from untrusted bytes, nested at most MAX_JSON_DEPTH levels."""
    if _json_depth(data) > MAX_JSON_DEPTH:
        raise malformed(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise malformed(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise malformed(f"{what} must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class ParsedJws:
    """A structurally valid JWS whose signature is not yet verified."""

    protected: dict[str, Any]
    alg: str
    nonce: str | None
    url: str
    jwk: dict[str, Any] | None
    kid: str | None
    payload: bytes  # raw; b"" for POST-as-GET (RFC 8555 §6.3)
    signing_input: bytes
    signature: bytes

    @property
    def post_as_get(self) -> bool:
        return self.payload == b""

    def payload_json(self) -> dict[str, Any]:
        if self.post_as_get:
            raise malformed("this resource needs a JSON payload, not POST-as-GET")
        return json_object(self.payload, "the JWS payload")


def parse(body: bytes, *, require_nonce: bool = True,
          algorithms: tuple[str, ...] = ALGORITHMS) -> ParsedJws:
    """Parse a flattened JWS; check the protected header's members (RFC 8555 §6.2)."""
    outer = json_object(body, "the request body")
    if "signatures" in outer:
        raise malformed("the JWS must use the flattened JSON serialization with one signature")
    extra = set(outer) - {"protected", "payload", "signature", "header"}
    if extra:
        raise malformed(f"unexpected JWS members: {', '.join(sorted(extra))}")
    if "header" in outer:
        raise malformed("the JWS must not have an unprotected header")
    for member in ("protected", "payload", "signature"):
        if member not in outer:
            raise malformed(f"the JWS has no '{member}'")
    protected_b64 = outer["protected"]
    payload_b64 = outer["payload"]
    protected = json_object(b64decode(protected_b64, "protected header"), "the protected header")
    payload = b64decode(payload_b64, "payload") if payload_b64 != "" else b""
    signature = b64decode(outer["signature"], "signature")
    alg = protected.get("alg")
    if not isinstance(alg, str):
        raise malformed("the protected header has no 'alg'")
    if alg not in algorithms:
        raise AcmeProblem(ProblemType.BAD_SIGNATURE_ALGORITHM,
                          f"signature algorithm {alg!r} is not supported",
                          extra={"algorithms": list(algorithms)})
    if "b64" in protected or "crit" in protected:
        raise malformed("the 'b64' and 'crit' header parameters are not supported")
    nonce = protected.get("nonce")
    if require_nonce:
        if not isinstance(nonce, str) or not nonce:
            raise AcmeProblem(ProblemType.BAD_NONCE, "the protected header has no 'nonce'")
        b64decode(nonce, "nonce")
    url = protected.get("url")
    if not isinstance(url, str) or not url:
        raise AcmeProblem(ProblemType.UNAUTHORIZED, "the protected header has no 'url'", 403)
    jwk = protected.get("jwk")
    kid = protected.get("kid")
    if (jwk is None) == (kid is None):
        raise malformed("the protected header must have exactly one of 'jwk' and 'kid'")
    if jwk is not None and not isinstance(jwk, dict):
        raise malformed("'jwk' must be a JSON object")
    if kid is not None and not isinstance(kid, str):
        raise malformed("'kid' must be a string")
    signing_input = f"{protected_b64}.{payload_b64}".encode("ascii")
    return ParsedJws(protected, alg, nonce if isinstance(nonce, str) else None, url, jwk, kid,
                     payload, signing_input, signature)


# -- keys (RFC 7517, RFC 7518 §6, RFC 8037) ----------------------------------------------


def _int(value: Any, what: str) -> int:
    return int.from_bytes(b64decode(value, what), "big")


def load_jwk(jwk: dict[str, Any]) -> PublicKey:
    """A public key from a JWK; badPublicKey for unsupported or weak keys."""
    kty = jwk.get("kty")
    if "d" in jwk:
        raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, "the JWK contains a private key")
    try:
        if kty == "EC":
            curve = jwk.get("crv")
            if curve not in _CURVES:
                raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"EC curve {curve!r} is not supported")
            curve_class, size = _CURVES[curve]
            x, y = b64decode(jwk.get("x"), "jwk x"), b64decode(jwk.get("y"), "jwk y")
            if len(x) != size or len(y) != size:
                raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, "EC coordinates have the wrong length")
            return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                                 curve_class()).public_key()
        if kty == "RSA":
            n, e = _int(jwk.get("n"), "jwk n"), _int(jwk.get("e"), "jwk e")
            if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
                raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY,
                                  f"RSA key of {n.bit_length()} bits: {MIN_RSA_BITS} to "
                                  f"{MAX_RSA_BITS} bits are accepted")
            if e < 65537 or e % 2 == 0:
                raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, "RSA public exponent is not acceptable")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY,
                                  f"OKP curve {jwk.get('crv')!r} is not supported")
            x = b64decode(jwk.get("x"), "jwk x")
            if len(x) != 32:
                raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, "Ed25519 key has the wrong length")
            return ed25519.Ed25519PublicKey.from_public_bytes(x)
    except ValueError as exc:  # point not on the curve and similar
        raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"invalid public key: {exc}") from None
    raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"key type {kty!r} is not supported")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) over the required members."""
    kty = jwk.get("kty")
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
               "OKP": ("crv", "kty", "x")}.get(str(kty))
    if members is None:
        raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"key type {kty!r} is not supported")
    canonical = json.dumps({m: jwk.get(m) for m in members}, separators=(",", ":"),
                           sort_keys=True)
    return b64encode(hashlib.sha256(canonical.encode()).digest())


def public_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    """Only the public members we store and compare."""
    kty = jwk.get("kty")
    keep = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e"),
            "OKP": ("kty", "crv", "x")}.get(str(kty), ())
    return {m: jwk[m] for m in keep if m in jwk}


def _alg_fits(alg: str, key: PublicKey) -> bool:
    if alg in _EC:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _EC[alg][1])
    if alg == "RS256":
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ed25519.Ed25519PublicKey)


def verify(parsed: ParsedJws, key: PublicKey) -> None:
    """Check the signature with ``key`` (RFC 7518 §3.3, §3.4; RFC 8037 §3.1)."""
    if not _alg_fits(parsed.alg, key):
        raise AcmeProblem(ProblemType.BAD_SIGNATURE_ALGORITHM,
                          f"algorithm {parsed.alg} does not match the key",
                          extra={"algorithms": list(ALGORITHMS)})
    signature = parsed.signature
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            size = _EC[parsed.alg][3]
            if len(signature) != 2 * size:
                raise malformed("JWS signature has the wrong length")
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                       int.from_bytes(signature[size:], "big"))
            key.verify(der, parsed.signing_input, ec.ECDSA(_EC[parsed.alg][2]()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, parsed.signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, parsed.signing_input)
    except InvalidSignature:
        raise malformed("JWS signature does not verify") from None


def key_authorization(token: str, account_jwk: dict[str, Any]) -> str:
    """RFC 8555 §8.1: token || '.' || base64url(JWK thumbprint)."""
    return f"{token}.{thumbprint(account_jwk)}"
