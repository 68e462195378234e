"""Properly signed PKCS#10 requests with unusual contents, built DER by DER.

``cryptography``'s builder refuses most of what an attacker sends (duplicated
extensions, otherName SANs with odd values, an IP network in a SAN, a CN with NUL
bytes, keys it would not sign with), so the CertificationRequestInfo is assembled here
from raw TLVs and signed with the matching key.  ``odd_csrs()`` is the hypothesis
strategy; ``plain_csr()`` the positive control.
"""

from __future__ import annotations

from functools import cache

from asn1crypto import core
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from hypothesis import strategies as st

PrivateKey = (ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | dsa.DSAPrivateKey
              | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)


def tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(items))


def oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def utf8(text: str) -> bytes:
    return tlv(0x0C, text.encode("utf-8", "surrogatepass"))


# -- keys (generated once; RSA-1024 and DSA are what a policy must refuse) ------------------

@cache
def key(kind: str) -> PrivateKey:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "secp256k1":
        return ec.generate_private_key(ec.SECP256K1())
    if kind == "brainpool":
        return ec.generate_private_key(ec.BrainpoolP256R1())
    if kind == "rsa1024":
        return rsa.generate_private_key(65537, 1024)
    if kind == "rsa2048":
        return rsa.generate_private_key(65537, 2048)
    if kind == "rsa-e3":
        return rsa.generate_private_key(3, 2048)
    if kind == "dsa":
        return dsa.generate_private_key(2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise ValueError(kind)


KEY_KINDS = ("p256", "p521", "secp256k1", "brainpool", "rsa1024", "rsa2048", "rsa-e3", "dsa",
             "ed25519", "ed448")


def _sign(private: PrivateKey, data: bytes) -> tuple[bytes, bytes]:
    """(AlgorithmIdentifier, signature) for ``data``."""
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return seq(oid("1.2.840.10045.4.3.2")), private.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(private, rsa.RSAPrivateKey):
        from cryptography.hazmat.primitives.asymmetric import padding

        return (seq(oid("1.2.840.113549.1.1.11"), b"\x05\x00"),
                private.sign(data, padding.PKCS1v15(), hashes.SHA256()))
    if isinstance(private, dsa.DSAPrivateKey):
        return seq(oid("2.16.840.1.101.3.4.3.2")), private.sign(data, hashes.SHA256())
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return seq(oid("1.3.101.112")), private.sign(data)
    return seq(oid("1.3.101.113")), private.sign(data)


def signed_csr(info: bytes, private: PrivateKey, *, break_signature: bool = False) -> bytes:
    """CertificationRequest over the raw CertificationRequestInfo ``info`` (RFC 2986)."""
    algorithm, signature = _sign(private, info)
    if break_signature:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return seq(info, algorithm, tlv(0x03, b"\x00" + signature))


def spki(private: PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def name(*attributes: tuple[str, bytes]) -> bytes:
    """A Name, one RDN per (type OID, encoded value)."""
    return seq(*(set_of(seq(oid(kind), value)) for kind, value in attributes))


def extension(kind: str, value: bytes, critical: bool = False) -> bytes:
    return seq(oid(kind), *([b"\x01\x01\xff"] if critical else []), tlv(0x04, value))


def info(subject: bytes, public_key: bytes, extensions: list[bytes],
         attributes: tuple[bytes, ...] = ()) -> bytes:
    attrs = list(attributes)
    if extensions:
        attrs.append(seq(oid("1.2.840.113549.1.9.14"), set_of(seq(*extensions))))
    return seq(b"\x02\x01\x00", subject, public_key, tlv(0xA0, b"".join(attrs)))


CN, ORG, OU, C, SERIAL, EMAIL, DC, UID = ("2.5.4.3", "2.5.4.10", "2.5.4.11", "2.5.4.6", "2.5.4.5",
                                        "1.2.840.113549.1.9.1", "0.9.2342.19200300.100.1.25",
                                        "0.9.2342.19200300.100.1.1")
SAN, KU, EKU, BC, NC = "2.5.29.17", "2.5.29.15", "2.5.29.37", "2.5.29.19", "2.5.29.30"


@cache
def plain_csr(cn: str = "fuzz.example.test") -> bytes:
    """A valid, ordinary request: P-256, CN and the same name as DNS SAN (one per name:
    ECDSA signatures vary in length, and hypothesis needs the same seed every time)."""
    private = key("p256")
    sans = seq(tlv(0x82, cn.encode()))
    return signed_csr(info(name((CN, utf8(cn))), spki(private), [extension(SAN, sans)]), private)


# -- the strategy -------------------------------------------------------------------------

_TEXT = st.one_of(
    st.sampled_from(["fuzz.example.test", "a\x00.example.test", "*.example.test",
                     "www.google.com", "xn--", "..", "-", "192.0.2.1", "::1",
                     "10.0.0.0/8", "é.example", "A" * 70, "x" * 4000, "", " ",
                     "system:masters", "UU", "\u202e", "\ud800"]),
    st.text(max_size=40))
_STRING_TAGS = (0x0C, 0x13, 0x16, 0x14, 0x1E, 0x1C, 0x04, 0x02, 0x05)
_ATTRIBUTE_TYPES = (CN, CN, ORG, OU, C, SERIAL, EMAIL, DC, UID, "2.5.4.97", "1.3.6.1.4.1.99999.1")


@st.composite
def _string(draw: st.DrawFn) -> bytes:
    text = draw(_TEXT)
    tag = draw(st.sampled_from(_STRING_TAGS))
    if tag == 0x1E:
        raw = text.encode("utf-16-be", "surrogatepass")
    elif tag == 0x1C:
        raw = text.encode("utf-32-be", "surrogatepass")
    elif tag == 0x05:
        raw = b""
    else:
        raw = text.encode("utf-8", "surrogatepass")
    return tlv(tag, raw)


@st.composite
def _general_name(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["dns", "dns", "email", "uri", "ip4", "ip6", "ipnet", "ipodd",
                                 "other", "upn", "registered", "directory", "x400", "edi"]))
    text = draw(_TEXT).encode("utf-8", "surrogatepass")
    if kind == "dns":
        return tlv(0x82, text)
    if kind == "email":
        return tlv(0x81, text + b"@example.test")
    if kind == "uri":
        return tlv(0x86, b"https://" + text)
    if kind == "ip4":
        return tlv(0x87, bytes(draw(st.sampled_from([[192, 0, 2, 7], [127, 0, 0, 1], [0, 0, 0, 0]]))))
    if kind == "ip6":
        return tlv(0x87, b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01")
    if kind == "ipnet":  # an address and a mask: a network, as in nameConstraints
        return tlv(0x87, bytes([10, 0, 0, 0, 255, 0, 0, 0]))
    if kind == "ipodd":
        return tlv(0x87, draw(st.binary(max_size=20)))
    if kind == "other":
        return tlv(0xA0, oid("1.3.6.1.4.1.99999.7") + tlv(0xA0, utf8(text.decode(errors="replace"))))
    if kind == "upn":
        return tlv(0xA0, oid("1.3.6.1.4.1.311.20.2.3") + tlv(0xA0, utf8("admin@corp.example")))
    if kind == "registered":
        return tlv(0x88, oid("1.2.3.4")[2:])
    if kind == "directory":
        return tlv(0xA4, name((CN, utf8("directory.example.test")), (ORG, utf8("Org"))))
    if kind == "x400":
        return tlv(0xA3, seq())
    return tlv(0xA5, seq(tlv(0xA1, utf8("edi"))))


@st.composite
def _extension(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["san", "san", "san", "san-garbage", "ku", "eku", "bc-ca", "nc",
                                 "unknown", "garbage"]))
    critical = draw(st.booleans())
    if kind == "san":
        names = draw(st.lists(_general_name(), min_size=0, max_size=4))
        return extension(SAN, seq(*names), critical)
    if kind == "san-garbage":
        return extension(SAN, draw(st.binary(max_size=12)), critical)
    if kind == "ku":
        return extension(KU, tlv(0x03, b"\x01\x86"), critical)  # signature, keyCertSign, cRLSign
    if kind == "eku":
        return extension(EKU, seq(oid("2.5.29.37.0"), oid("1.3.6.1.5.5.7.3.3")), critical)
    if kind == "bc-ca":
        return extension(BC, seq(b"\x01\x01\xff"), True)
    if kind == "nc":
        return extension(NC, seq(tlv(0xA0, seq(tlv(0x80, tlv(0x82, b"example.test"))))), True)
    if kind == "unknown":
        return extension("1.3.6.1.4.1.99999.9", b"\x05\x00", critical)
    return seq(draw(st.binary(max_size=8)))


@st.composite
def odd_csrs(draw: st.DrawFn) -> bytes:
    """A signed CSR with hypothesis-chosen subject, extensions, attributes and key."""
    private = key(draw(st.sampled_from(KEY_KINDS)))
    rdns = draw(st.lists(st.tuples(st.sampled_from(_ATTRIBUTE_TYPES), _string()), max_size=4))
    if draw(st.booleans()):
        rdns.append((CN, utf8("fuzz.example.test")))
    extensions = draw(st.lists(_extension(), max_size=3))
    if draw(st.booleans()) and extensions:
        extensions.append(extensions[0])  # a duplicated extension
    attributes: list[bytes] = []
    if draw(st.booleans()):
        attributes.append(seq(oid("1.2.840.113549.1.9.7"), set_of(draw(_string()))))
    if draw(st.booleans()):
        attributes.append(seq(oid("1.3.6.1.4.1.99999.3"), set_of(b"\x05\x00")))
    subject = name(*rdns)
    if draw(st.booleans()):  # one multi-valued RDN
        subject = seq(set_of(seq(oid(CN), utf8("a.example.test")), seq(oid(ORG), utf8("b"))))
    return signed_csr(info(subject, spki(private), extensions, tuple(attributes)), private,
                      break_signature=draw(st.integers(0, 9)) == 0)
