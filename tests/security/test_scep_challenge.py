"""Rule 5: a SCEP challenge bound to a pattern vouches for every name of the CSR.

A one-time challenge made with ``gatehouse challenge create --subject-pattern RE`` must
fully match each subject CN (and emailAddress) and every DNS, IP, email and URI
subjectAltName of the CSR, not only the first CN: a device handed a challenge for
``dev1.example.com`` cannot add ``www.bank.example`` or a second CN.  Refusals are SCEP
FAILURE badRequest; the positive control (matching CN and SAN) gets SUCCESS with exactly
those names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID

from tests.security.conftest import start_configured
from tests.support.server import GatehouseServer
from tests.unit.protocols.scep.client import Client, Reply, ra_from_ca_ra_cert, self_signed
from tests.unit.protocols.scep.server_setup import challenge, http_get, http_post

pytestmark = pytest.mark.e2e

PATTERN = r"dev1\.example\.com"


@pytest.fixture(scope="module")
def gh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatehouseServer]:
    server = start_configured(tmp_path_factory, "scep-challenge")
    yield server
    server.stop()


def _csr(key: rsa.RSAPrivateKey, secret: str, cns: Sequence[str], *,
         dns: Sequence[str] = (), ips: Sequence[str] = (), emails: Sequence[str] = ()) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.RFC822Name(e) for e in emails]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, secret.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def _enroll(gh: GatehouseServer, secret: str, cns: Sequence[str], **sans: Sequence[str]
            ) -> Reply:
    _, _, body = http_get(f"{gh.http_url}/scep?operation=GetCACert")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = Client(ra_der=ra_from_ca_ra_cert(body)[0], key=key, signer=self_signed(key))
    message = client.pkcs_req(_csr(key, secret, cns, **sans))
    status, _, answer = http_post(f"{gh.http_url}/scep?operation=PKIOperation", message)
    assert status == 200, answer
    return client.read(answer)


def _bound(gh: GatehouseServer) -> str:
    return challenge(gh.data_dir, "default", "--subject-pattern", PATTERN)


@pytest.mark.parametrize(("cns", "sans"), [
    (["dev1.example.com"], {"dns": ["dev1.example.com", "www.bank.example"]}),
    (["dev1.example.com"], {"dns": ["admin.corp.example"]}),
    (["dev1.example.com", "admin.corp.example"], {}),
    (["admin.corp.example", "dev1.example.com"], {}),
    (["dev1.example.com"], {"ips": ["192.0.2.10"]}),
    (["dev1.example.com"], {"emails": ["ceo@bank.example"]}),
], ids=["extra-dns-san", "other-dns-san", "second-cn", "second-cn-first", "ip-san",
        "email-san"])
def test_a_name_outside_the_pattern_fails(gh: GatehouseServer, cns: list[str],
                                          sans: dict[str, list[str]]) -> None:
    secret = _bound(gh)
    reply = _enroll(gh, secret, cns, **sans)
    assert (reply.status, reply.fail_info) == ("2", "2"), reply.fail_text  # FAILURE badRequest
    assert "not valid for this subject" in (reply.fail_text or "")
    assert not reply.certificates
    # The challenge was not spent by the refused request: the legitimate one still works.
    control = _enroll(gh, secret, ["dev1.example.com"], dns=["dev1.example.com"])
    assert control.status == "0", control.fail_text


def test_matching_cn_and_san_succeeds(gh: GatehouseServer) -> None:
    reply = _enroll(gh, _bound(gh), ["dev1.example.com"], dns=["dev1.example.com"])
    assert reply.status == "0", reply.fail_text
    cert = reply.certificates[0]
    assert cert.subject.rfc4514_string() == "CN=dev1.example.com"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["dev1.example.com"]
