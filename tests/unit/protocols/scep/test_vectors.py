"""Replay the captured client requests (tests/vectors/scep, see its README.md).

Each real client's request must parse, verify and decrypt with the RA it was sent to,
carry the CSR the client was asked for, and show the quirks recorded for its family.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import AttributeOID, NameOID

from gateway.pem import load_csr_der
from gateway.ra import load_ra
from protocols.scep import message
from protocols.scep.vocabulary import (
    LEGACY_CIPHERS,
    LEGACY_DIGESTS,
    MODERN_CIPHERS,
    MODERN_DIGESTS,
)

VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "scep"
ENTRIES: list[dict[str, Any]] = json.loads((VECTORS / "vectors.json").read_text())


def test_every_client_family_has_vectors() -> None:
    families = {entry["client"] for entry in ENTRIES}
    assert {"scepclient", "certmonger", "synthetic"} <= families
    assert any(e["method"] == "GET" for e in ENTRIES)
    assert any(e["message_type"] == "17" for e in ENTRIES)  # a RenewalReq


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_vector_replays(entry: dict[str, Any]) -> None:
    ra = load_ra(VECTORS / "ra.key", VECTORS / "ra.pem")
    der = (VECTORS / entry["file"]).read_bytes()
    header, signed = message.read_header(der)
    assert header.message_type.value == entry["message_type"]
    assert header.transaction_id == entry["transaction_id"]
    pki = message.verify(header, signed, allowed_digests=MODERN_DIGESTS | LEGACY_DIGESTS)
    assert pki.digest == entry["digest"]
    opened = message.open_envelope(pki, ra_der=ra.der, ra_key=ra.key,
                                   allowed_ciphers=MODERN_CIPHERS | LEGACY_CIPHERS)
    assert opened.cipher == entry["cipher"]
    csr = load_csr_der(opened.content)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == entry["cn"]
    if entry["message_type"] == "19" and entry["challenge"] and entry["note"].find(
            "current certificate") < 0:
        value = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
        assert value.decode() == entry["challenge"]
    if entry["file"].endswith("intune-sid.der"):
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
        assert uris[0].startswith("tag:microsoft.com,2022-09-14:sid:S-1-5-21-")


def test_scepclient_quirks_are_what_the_defaults_must_accept() -> None:
    """micromdm scepclient 2.1 sends SHA-1 and single DES whatever GetCACaps says."""
    first = next(e for e in ENTRIES if e["client"] == "scepclient")
    assert (first["digest"], first["cipher"]) == ("sha1", "des")
    assert first["method"] == "POST"
    monger = next(e for e in ENTRIES if e["client"] == "certmonger")
    assert monger["method"] == "GET" and monger["cipher"] in MODERN_CIPHERS
