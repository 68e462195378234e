"""/csrattrs content built from profile settings (RFC 7030 §4.5.2)."""

from __future__ import annotations

from asn1crypto import core

from gateway.protocol_settings.est import CsrAttrsSettings, EstProfileSettings
from protocols.est import csrattrs


def test_nothing_to_ask_gives_none() -> None:
    assert csrattrs.build(EstProfileSettings()) is None


def test_ec_key_sans_channel_binding_and_extra_oids() -> None:
    settings = EstProfileSettings(channel_binding=True, csrattrs=CsrAttrsSettings(
        key_type="ec-p384", required_sans=["dns"], extra_oids=["2.5.4.5"]))
    der = csrattrs.build(settings)
    assert der is not None and der[0] == 0x30
    items = csrattrs.parse(der)
    curve = core.ObjectIdentifier.load(items[0][1][0]).dotted  # type: ignore[index]
    assert items[0][0] == csrattrs.OID_EC_PUBLIC_KEY and curve == "1.3.132.0.34"
    assert items[1:] == ["1.2.840.10045.4.3.3", csrattrs.OID_SAN,
                         csrattrs.OID_CHALLENGE_PASSWORD, "2.5.4.5"]


def test_rsa_size_and_ed25519() -> None:
    rsa = csrattrs.parse(csrattrs.build(EstProfileSettings(
        csrattrs=CsrAttrsSettings(key_type="rsa-3072"))) or b"")
    assert rsa[0][0] == csrattrs.OID_RSA
    assert core.Integer.load(rsa[0][1][0]).native == 3072  # type: ignore[index]
    ed = csrattrs.parse(csrattrs.build(EstProfileSettings(
        csrattrs=CsrAttrsSettings(key_type="ed25519"))) or b"")
    assert ed == [csrattrs.OID_ED25519]
