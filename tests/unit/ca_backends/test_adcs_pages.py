"""Reading certsrv pages: the forms deployed clients match, and the variants they meet."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from ca_backends.adcs.pages import (
    Disposition,
    order_chain,
    parse_error,
    parse_renewals,
    parse_result,
    read_certificate,
    read_pkcs7,
)
from tests.support import adcs_simulator as sim_pages
from tests.support.adcs_simulator import AdcsSimulator


def test_issued_page_by_anchor_and_by_script() -> None:
    assert parse_result(sim_pages.issued_page(1234)) == parse_result(
        '<script>location="certnew.cer?ReqID=1234&"+getEncoding();</script>')
    page = parse_result(sim_pages.issued_page(1234))
    assert page.disposition is Disposition.ISSUED and page.request_id == 1234
    anchor_only = parse_result('<A Href="certnew.cer?ReqID=77&amp;Enc=b64">Base 64 encoded</A>')
    assert anchor_only.request_id == 77


def test_pending_page() -> None:
    page = parse_result(sim_pages.pending_page(5150))
    assert page.disposition is Disposition.PENDING and page.request_id == 5150


def test_denied_page_keeps_the_disposition_message() -> None:
    message = ("Denied by Policy Module  0x80094800, The request was for a certificate template "
               "that is not supported by the Active Directory Certificate Services policy: X.")
    page = parse_result(sim_pages.denied_page(9, message))
    assert page.disposition is Disposition.DENIED and page.request_id == 9
    assert page.message == message  # two spaces after "Module", as ADCS writes it
    escaped = parse_result(sim_pages.denied_page(10, 'Denied by <b>"policy"</b> & more'))
    assert escaped.disposition is Disposition.DENIED


def test_error_page_reads_disposition_message_and_last_status() -> None:
    page = parse_result(sim_pages.error_page("newreq", "1 - Error", "Error Parsing Request",
                                             sim_pages.LAST_STATUS["badtag"]))
    assert page.disposition is Disposition.ERROR and page.message == "Error Parsing Request"
    assert page.last_status == 0x8009310B and not page.transient
    stopped = parse_error(sim_pages.error_page(
        "newreq", "(never set)", "", "The RPC server is unavailable. 0x800706ba (WIN32: 1722 "
        "RPC_S_SERVER_UNAVAILABLE)"))
    assert stopped.transient and stopped.message == ""


@pytest.mark.parametrize(("message", "status", "disposition"), [
    ("Taken Under Submission", "ok", Disposition.PENDING),
    ("Denied by CORP\\pkiadmin", "denied", Disposition.DENIED),
    ("", "empty", Disposition.ERROR),
])
def test_certnew_status_pages(message: str, status: str, disposition: Disposition) -> None:
    page = parse_error(sim_pages.error_page("", "5", message, sim_pages.LAST_STATUS[status]))
    assert page.disposition is disposition
    if status == "empty":
        assert page.last_status == 0x80094004


def test_unrecognised_pages() -> None:
    assert parse_result("<html>Service Unavailable</html>").disposition is Disposition.UNKNOWN
    with pytest.raises(ValueError):
        parse_renewals("<html>no script</html>")
    assert parse_renewals(sim_pages.carc_page(3)) == 3


def test_certificates_and_chains_in_every_encoding(tmp_path: Path) -> None:
    sim = AdcsSimulator(tmp_path / "sim")
    issuing = sim.issuers[0][0]
    der = issuing.public_bytes(Encoding.DER)
    assert read_certificate(der) == issuing
    assert read_certificate(sim_pages.b64_crlf("CERTIFICATE", der)) == issuing
    bag = pkcs7.serialize_certificates([sim.root, issuing], Encoding.DER)
    for body in (bag, sim_pages.b64_crlf("CERTIFICATE", bag),  # the quirk
                 sim_pages.b64_crlf("PKCS7", bag), base64.b64encode(bag)):
        assert order_chain(read_pkcs7(body)) == [issuing, sim.root]
    with pytest.raises(ValueError):
        read_pkcs7(b"<html>error</html>")


def test_order_chain_from_any_order(tmp_path: Path) -> None:
    sim = AdcsSimulator(tmp_path / "sim")
    sim.renew_ca()
    chain = [sim.issuers[1][0], sim.root]
    shuffled = chain[:]
    random.shuffle(shuffled)
    assert order_chain(shuffled) == chain
