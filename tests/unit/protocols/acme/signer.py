"""A tiny JWS signer and ACME client for tests (independent of the server's code)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int, size: int | None = None) -> str:
    size = size or (value.bit_length() + 7) // 8
    return b64(value.to_bytes(size, "big"))


class Key:
    """An account or certificate key with its JWK and JWS alg."""

    def __init__(self, kind: str = "ES256", rsa_bits: int = 2048) -> None:
        self.kind = kind
        if kind == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
        elif kind == "ES384":
            self.private = ec.generate_private_key(ec.SECP384R1())
        elif kind == "RS256":
            self.private = rsa.generate_private_key(65537, rsa_bits)
        elif kind == "EdDSA":
            self.private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(kind)

    @property
    def alg(self) -> str:
        return self.kind

    @property
    def jwk(self) -> dict[str, str]:
        pub = self.private.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            size = 32 if pub.curve.name == "secp256r1" else 48
            numbers = pub.public_numbers()
            return {"kty": "EC", "crv": "P-256" if size == 32 else "P-384",
                    "x": _int(numbers.x, size), "y": _int(numbers.y, size)}
        if isinstance(pub, rsa.RSAPublicKey):
            numbers = pub.public_numbers()
            return {"kty": "RSA", "n": _int(numbers.n), "e": _int(numbers.e)}
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return {"kty": "OKP", "crv": "Ed25519",
                "x": b64(pub.public_bytes(Encoding.Raw, PublicFormat.Raw))}

    def thumbprint(self) -> str:
        jwk = self.jwk
        members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                   "OKP": ("crv", "kty", "x")}[jwk["kty"]]
        data = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
        return b64(hashlib.sha256(data.encode()).digest())

    def sign(self, data: bytes) -> bytes:
        if self.kind in ("ES256", "ES384"):
            h = hashes.SHA256() if self.kind == "ES256" else hashes.SHA384()
            size = 32 if self.kind == "ES256" else 48
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(h)))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if self.kind == "RS256":
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.private.sign(data)


def jws(key: Key, url: str, payload: Any, *, nonce: str | None, kid: str | None = None,
        alg: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Flattened JWS; payload None means POST-as-GET."""
    header: dict[str, Any] = {"alg": alg or key.alg, "url": url}
    if nonce is not None:
        header["nonce"] = nonce
    if kid:
        header["kid"] = kid
    else:
        header["jwk"] = key.jwk
    header.update(extra or {})
    protected = b64(json.dumps(header).encode())
    body = "" if payload is None else b64(json.dumps(payload).encode())
    signature = key.sign(f"{protected}.{body}".encode())
    return {"protected": protected, "payload": body, "signature": b64(signature)}


def hmac_jws(kid: str, hmac_key: bytes, url: str, jwk: dict[str, str]) -> dict[str, str]:
    import hmac

    protected = b64(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
    payload = b64(json.dumps(jwk).encode())
    mac = hmac.new(hmac_key, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64(mac)}


class Client:
    """Drives an ACME server through any httpx-like client (TestClient or httpx.Client)."""

    def __init__(self, http: Any, directory_url: str, key: Key | None = None) -> None:
        self.http = http
        self.directory = http.get(directory_url).json()
        self.key = key or Key()
        self.kid: str | None = None
        self._nonce: str | None = None

    def nonce(self) -> str:
        if self._nonce:
            nonce, self._nonce = self._nonce, None
            return nonce
        return str(self.http.head(self.directory["newNonce"]).headers["Replay-Nonce"])

    def post(self, url: str, payload: Any, *, use_jwk: bool = False, key: Key | None = None,
             body: Any = None, content_type: str = "application/jose+json") -> Any:
        signed = body if body is not None else jws(
            key or self.key, url, payload, nonce=self.nonce(),
            kid=None if use_jwk else self.kid)
        response = self.http.post(url, content=json.dumps(signed).encode(),
                                  headers={"Content-Type": content_type})
        self._nonce = response.headers.get("Replay-Nonce")
        return response

    def register(self, **payload: Any) -> Any:
        payload.setdefault("termsOfServiceAgreed", True)
        response = self.post(self.directory["newAccount"], payload, use_jwk=True)
        if response.status_code in (200, 201):
            self.kid = response.headers["Location"]
        return response

    def key_authorization(self, token: str) -> str:
        return f"{token}.{self.key.thumbprint()}"
