"""The internal CA backend: set-up, issuance profile, rollover, CRL and OCSP signing."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import os
import secrets
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
)
from pydantic import ValidationError

from ca_backends.base import (
    BackendContext,
    BackendRejected,
    CaBackend,
    RevocationSigner,
    RevokedEntry,
    Rollover,
    Unsupported,
)
from ca_backends.internal import (
    CaSetupError,
    InternalCa,
    InternalCaConfig,
    build_internal_ca,
    ensure_passphrase,
    init_from_config,
    init_internal_ca,
    issue_tls_server_cert,
    read_passphrase,
    rollover,
)
from ca_backends.registry import registered
from gateway.clock import FixedClock
from gateway.errors import ConfigError, ErrorKind, GatewayError
from gateway.model import (
    Decision,
    EnrollmentRequest,
    Identifier,
    IdentifierType,
    IssuedCertificate,
    Operation,
    Outcome,
    Principal,
    PrincipalKind,
    Protocol,
    RevocationReason,
)

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
URL = "http://pki.example.com"
BACKEND = "internal"
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH.dotted_string
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string

LeafKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


# -- helpers ----------------------------------------------------------------------------------


@functools.cache
def leaf_key(kind: str) -> LeafKey:
    """One key per kind for the whole run: key generation is not what is under test."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind.removeprefix("rsa")))
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    assert kind == "ed25519"
    return ed25519.Ed25519PrivateKey.generate()


def make_request(key: LeafKey, subject: x509.Name | None = None) -> EnrollmentRequest:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject or x509.Name([]))
        .sign(key, algorithm)
    )
    return EnrollmentRequest(
        protocol=Protocol.EST,
        operation=Operation.ENROLL,
        profile="default",
        csr=csr,
        csr_der=csr.public_bytes(serialization.Encoding.DER),
        principal=Principal(PrincipalKind.PASSWORD, "device-1"),
    )


def cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


def make_decision(**changes: object) -> Decision:
    values: dict[str, object] = {
        "outcome": Outcome.APPROVED,
        "reason": "ok",
        "profile": "default",
        "backend": BACKEND,
        "not_before": NOW - dt.timedelta(minutes=1),
        "not_after": NOW + dt.timedelta(days=90),
        "subject": cn("leaf.example.com"),
        "sans": (
            Identifier(IdentifierType.DNS, "leaf.example.com"),
            Identifier(IdentifierType.IP, "192.0.2.7"),
        ),
        "key_usage": frozenset({"digital_signature"}),
        "extended_key_usage": (SERVER_AUTH, CLIENT_AUTH),
    }
    values.update(changes)
    return Decision(**values)  # type: ignore[arg-type]


def issue(ca: InternalCa, request: EnrollmentRequest, decision: Decision) -> IssuedCertificate:
    result = asyncio.run(ca.issue(request, decision))
    assert isinstance(result, IssuedCertificate)
    return result


def ext(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:  # type: ignore[type-arg]
    return certificate.extensions.get_extension_for_class(kind)


def verify_signature(
    public_key: object, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm
) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(signature, data, padding.PKCS1v15(), algorithm)


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def run_openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def passphrase() -> bytes:
    return secrets.token_urlsafe(24).encode()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def ca_dir(tmp_path: Path, passphrase: bytes, clock: FixedClock) -> Path:
    directory = tmp_path / "ca"
    init_internal_ca(directory, passphrase, "ec-p256", clock=clock)
    return directory


@pytest.fixture
def ca(ca_dir: Path, passphrase: bytes, clock: FixedClock) -> InternalCa:
    return InternalCa.load(BACKEND, ca_dir, passphrase, public_http_url=URL, clock=clock)


@pytest.fixture
def leaf(ca: InternalCa) -> IssuedCertificate:
    return issue(ca, make_request(leaf_key("p256")), make_decision())


# -- set-up: init, passphrase, loading -----------------------------------------------------


@pytest.mark.parametrize("key_file", ["root.key", "issuers/1/key.pem"])
def test_init_encrypts_keys(ca_dir: Path, passphrase: bytes, key_file: str) -> None:
    data = (ca_dir / key_file).read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in data
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(data, password=None)
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(data, password=b"wrong" + passphrase)
    key = serialization.load_pem_private_key(data, password=passphrase)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_init_file_modes(ca_dir: Path) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    for directory in (ca_dir, ca_dir / "issuers", ca_dir / "issuers" / "1"):
        assert mode(directory) == 0o700
    for key in (ca_dir / "root.key", ca_dir / "issuers" / "1" / "key.pem"):
        assert mode(key) == 0o600


def test_init_writes_issuer_list(ca_dir: Path, ca: InternalCa) -> None:
    entries = json.loads((ca_dir / "issuers.json").read_text())
    assert [entry["id"] for entry in entries] == ["1"]
    active_from = dt.datetime.fromisoformat(entries[0]["active_from"])
    assert active_from <= NOW
    assert ca.active_issuer().id == "1"


def test_init_refuses_to_overwrite(ca_dir: Path, passphrase: bytes, clock: FixedClock) -> None:
    before = {p: p.read_bytes() for p in ca_dir.rglob("*") if p.is_file()}
    with pytest.raises(CaSetupError, match="refusing to overwrite"):
        init_internal_ca(ca_dir, passphrase, "ec-p256", clock=clock)
    assert {p: p.read_bytes() for p in ca_dir.rglob("*") if p.is_file()} == before


def test_init_refuses_unknown_key_type(
    tmp_path: Path, passphrase: bytes, clock: FixedClock
) -> None:
    with pytest.raises(CaSetupError, match="unknown CA key type"):
        init_internal_ca(tmp_path / "ca", passphrase, "dsa-1024", clock=clock)


def test_ca_certificates(ca: InternalCa) -> None:
    root = ca.root_certificate
    issuer = ca.active_issuer().certificate
    root.verify_directly_issued_by(root)
    issuer.verify_directly_issued_by(root)
    assert root.subject == cn("Gatehouse Root CA")
    assert issuer.subject == cn("Gatehouse Issuing CA 1")
    root_bc = ext(root, x509.BasicConstraints)
    issuer_bc = ext(issuer, x509.BasicConstraints)
    assert root_bc.critical and root_bc.value.ca
    assert issuer_bc.critical and issuer_bc.value.ca and issuer_bc.value.path_length == 0
    issuer_ku = ext(issuer, x509.KeyUsage)
    assert issuer_ku.critical and issuer_ku.value.key_cert_sign and issuer_ku.value.crl_sign
    assert ext(issuer, x509.AuthorityKeyIdentifier).value.key_identifier == (
        ext(root, x509.SubjectKeyIdentifier).value.digest
    )
    assert root.not_valid_after_utc - root.not_valid_before_utc > dt.timedelta(days=3650)
    assert issuer.not_valid_after_utc <= root.not_valid_after_utc


def test_organization_and_prefix(tmp_path: Path, passphrase: bytes, clock: FixedClock) -> None:
    init_internal_ca(
        tmp_path / "ca",
        passphrase,
        "ec-p256",
        clock=clock,
        subject_prefix="Acme",
        organization="Acme Corp",
    )
    ca = InternalCa.load(BACKEND, tmp_path / "ca", passphrase, public_http_url=URL, clock=clock)
    assert ca.root_certificate.subject.rfc4514_string() == "CN=Acme Root CA,O=Acme Corp"
    assert ca.active_issuer().certificate.subject.rfc4514_string() == (
        "CN=Acme Issuing CA 1,O=Acme Corp"
    )


def test_setup_errors_are_config_errors() -> None:
    # Start-up and the CLI report a ConfigError cleanly (no traceback).
    assert issubclass(CaSetupError, ConfigError)


def test_load_with_wrong_passphrase(ca_dir: Path, clock: FixedClock) -> None:
    with pytest.raises(CaSetupError, match="wrong CA passphrase"):
        InternalCa.load(BACKEND, ca_dir, b"not-it", public_http_url=URL, clock=clock)


def test_ensure_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "ca" / "passphrase"
    first = ensure_passphrase(path)
    assert len(first) >= 43
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_passphrase(path) == first
    assert ensure_passphrase(tmp_path / "other") != first


def test_read_passphrase_env_wins(tmp_path: Path) -> None:
    config = InternalCaConfig(type="internal")
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "passphrase").write_bytes(b"from-file\n")
    assert read_passphrase(config, tmp_path, {}) == b"from-file"
    assert read_passphrase(config, tmp_path, {"GATEHOUSE_CA_PASSPHRASE": "from-env"}) == (
        b"from-env"
    )


def test_read_passphrase_missing(tmp_path: Path) -> None:
    config = InternalCaConfig(type="internal", passphrase_env="NO_SUCH_VARIABLE_X")
    with pytest.raises(CaSetupError, match="NO_SUCH_VARIABLE_X"):
        read_passphrase(config, tmp_path, {})


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        InternalCaConfig.model_validate({"type": "internal", "directroy": "ca"})
    with pytest.raises(ValidationError):
        InternalCaConfig.model_validate({"type": "internal", "key_type": "ec-p521"})


def test_registered_factory(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEHOUSE_CA_PASSPHRASE", raising=False)
    config = InternalCaConfig.model_validate({"type": "internal", "key_type": "ec-p384"})
    context = BackendContext(data_dir=str(tmp_path), public_http_url=URL, clock=clock)
    factory = registered()["internal"].factory
    with pytest.raises(CaSetupError, match="gatehouse init"):
        factory("main", config, context)

    directory = init_from_config(config, tmp_path, clock=clock, environ={})
    assert directory == tmp_path / "ca"
    assert (tmp_path / "ca" / "passphrase").exists()
    backend = factory("main", config, context)
    assert isinstance(backend, InternalCa)
    assert backend.name == "main"
    assert backend.crl_validity == dt.timedelta(days=1)
    root_key = backend.root_certificate.public_key()
    assert isinstance(root_key, ec.EllipticCurvePublicKey) and root_key.curve.name == "secp384r1"


def test_implements_interfaces(ca: InternalCa) -> None:
    assert isinstance(ca, CaBackend)
    assert isinstance(ca, RevocationSigner)
    assert isinstance(ca, Rollover)


# -- issuance ---------------------------------------------------------------------------------


def test_issue_chain_verifies(ca: InternalCa, leaf: IssuedCertificate) -> None:
    certificate = leaf.certificate
    issuer = x509.load_der_x509_certificate(leaf.chain[0])
    root = x509.load_der_x509_certificate(leaf.chain[1])
    certificate.verify_directly_issued_by(issuer)
    issuer.verify_directly_issued_by(root)
    assert root == ca.root_certificate
    assert leaf.serial == format(certificate.serial_number, "x")
    assert leaf.issuer == "CN=Gatehouse Issuing CA 1"
    assert leaf.subject == "CN=leaf.example.com"
    assert leaf.backend == BACKEND and leaf.backend_ref is None
    assert leaf.not_before == certificate.not_valid_before_utc
    assert leaf.sans == make_decision().sans
    assert asyncio.run(ca.ca_chain()) == [issuer, root]


def test_serials_positive_sixteen_octets_unique(ca: InternalCa) -> None:
    request = make_request(leaf_key("p256"))
    decision = make_decision()

    async def many() -> list[int]:
        serials = []
        for _ in range(1000):
            result = await ca.issue(request, decision)
            assert isinstance(result, IssuedCertificate)
            serials.append(result.certificate.serial_number)
        return serials

    serials = asyncio.run(many())
    assert len(set(serials)) == 1000
    # Bit 126 set, bit 127 clear: positive and exactly 16 octets as a DER INTEGER.
    assert all(s > 0 and s.bit_length() == 127 for s in serials)


def test_issue_extensions(ca: InternalCa, leaf: IssuedCertificate) -> None:
    certificate = leaf.certificate
    issuer = ca.active_issuer().certificate
    bc = ext(certificate, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext(certificate, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
    eku = ext(certificate, x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext(certificate, x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(leaf_key("p256").public_key())
    )
    assert ext(certificate, x509.AuthorityKeyIdentifier).value.key_identifier == (
        ext(issuer, x509.SubjectKeyIdentifier).value.digest
    )
    san = ext(certificate, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["leaf.example.com"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    aia = {
        d.access_method: d.access_location.value
        for d in ext(certificate, x509.AuthorityInformationAccess).value
    }
    assert aia == {
        AuthorityInformationAccessOID.OCSP: f"{URL}/ocsp/{BACKEND}",
        AuthorityInformationAccessOID.CA_ISSUERS: f"{URL}/ca/{BACKEND}/1.cer",
    }
    (point,) = ext(certificate, x509.CRLDistributionPoints).value
    assert [name.value for name in point.full_name] == [f"{URL}/crl/{BACKEND}/1.crl"]
    assert certificate.signature_hash_algorithm is not None
    assert certificate.signature_hash_algorithm.name == "sha256"


def test_issue_all_san_types(ca: InternalCa) -> None:
    sans = (
        Identifier(IdentifierType.DNS, "a.example.com"),
        Identifier(IdentifierType.IP, "2001:db8::1"),
        Identifier(IdentifierType.EMAIL, "User@Example.com"),
        Identifier(IdentifierType.URI, "spiffe://example.com/device/1"),
    )
    certificate = issue(ca, make_request(leaf_key("p256")), make_decision(sans=sans)).certificate
    names = ext(certificate, x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["a.example.com"]
    assert [str(v) for v in names.get_values_for_type(x509.IPAddress)] == ["2001:db8::1"]
    assert names.get_values_for_type(x509.RFC822Name) == ["user@example.com"]
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://example.com/device/1"
    ]


def test_issue_uses_decision_not_csr(ca: InternalCa) -> None:
    request = make_request(leaf_key("p256"), cn("evil.example.net"))
    certificate = issue(ca, request, make_decision()).certificate
    assert certificate.subject == cn("leaf.example.com")


def test_san_critical_when_subject_empty(ca: InternalCa) -> None:
    decision = make_decision(subject=x509.Name([]))
    certificate = issue(ca, make_request(leaf_key("p256")), decision).certificate
    assert certificate.subject == x509.Name([])
    assert ext(certificate, x509.SubjectAlternativeName).critical


def test_no_san_and_no_eku_extensions(ca: InternalCa) -> None:
    decision = make_decision(sans=(), extended_key_usage=())
    certificate = issue(ca, make_request(leaf_key("p256")), decision).certificate
    oids = {e.oid for e in certificate.extensions}
    assert x509.SubjectAlternativeName.oid not in oids
    assert x509.ExtendedKeyUsage.oid not in oids


def test_time_stamping_eku_is_critical(ca: InternalCa) -> None:
    decision = make_decision(extended_key_usage=(ExtendedKeyUsageOID.TIME_STAMPING.dotted_string,))
    certificate = issue(ca, make_request(leaf_key("p256")), decision).certificate
    assert ext(certificate, x509.ExtendedKeyUsage).critical


def test_validity_clipped_to_issuer(ca: InternalCa) -> None:
    issuer = ca.active_issuer().certificate
    decision = make_decision(
        not_before=issuer.not_valid_before_utc - dt.timedelta(days=5),
        not_after=NOW + dt.timedelta(days=365 * 30),
    )
    certificate = issue(ca, make_request(leaf_key("p256")), decision).certificate
    assert certificate.not_valid_after_utc == issuer.not_valid_after_utc
    assert certificate.not_valid_before_utc == issuer.not_valid_before_utc


def test_validity_as_decided(ca: InternalCa) -> None:
    certificate = issue(ca, make_request(leaf_key("p256")), make_decision()).certificate
    assert certificate.not_valid_before_utc == NOW - dt.timedelta(minutes=1)
    assert certificate.not_valid_after_utc == NOW + dt.timedelta(days=90)


@pytest.mark.parametrize(
    ("kind", "requested", "expected"),
    [
        ("p256", {"digital_signature", "key_encipherment"}, {"digital_signature"}),
        ("p256", {"digital_signature", "key_agreement"}, {"digital_signature", "key_agreement"}),
        ("p256", set(), {"digital_signature"}),
        (
            "rsa2048",
            {"digital_signature", "key_encipherment"},
            {"digital_signature", "key_encipherment"},
        ),
        ("rsa2048", set(), {"digital_signature", "key_encipherment"}),
        ("rsa2048", {"digital_signature", "key_agreement"}, {"digital_signature"}),
        (
            "ed25519",
            {"digital_signature", "key_encipherment", "key_agreement"},
            {"digital_signature"},
        ),
    ],
)
def test_key_usage_fits_key_type(
    ca: InternalCa, kind: str, requested: set[str], expected: set[str]
) -> None:
    decision = make_decision(key_usage=frozenset(requested))
    certificate = issue(ca, make_request(leaf_key(kind)), decision).certificate
    usage = ext(certificate, x509.KeyUsage).value
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    )
    assert {name for name in names if getattr(usage, name)} == expected


@pytest.mark.parametrize("kind", ["rsa2048", "rsa3072", "p256", "p384", "ed25519"])
def test_leaf_key_types(ca: InternalCa, kind: str) -> None:
    key = leaf_key(kind)
    issued = issue(ca, make_request(key), make_decision())
    certificate = issued.certificate
    certificate.verify_directly_issued_by(x509.load_der_x509_certificate(issued.chain[0]))
    assert certificate.public_key() == key.public_key()


@pytest.mark.parametrize(
    ("key_type", "hash_name"),
    [("ec-p256", "sha256"), ("ec-p384", "sha384"), ("rsa-2048", "sha256"), ("rsa-3072", "sha256")],
)
def test_ca_key_types(
    tmp_path: Path, passphrase: bytes, clock: FixedClock, key_type: str, hash_name: str
) -> None:
    init_internal_ca(tmp_path / "ca", passphrase, key_type, clock=clock)
    ca = InternalCa.load(BACKEND, tmp_path / "ca", passphrase, public_http_url=URL, clock=clock)
    issued = issue(ca, make_request(leaf_key("p256")), make_decision())
    issuer = x509.load_der_x509_certificate(issued.chain[0])
    issued.certificate.verify_directly_issued_by(issuer)
    issuer.verify_directly_issued_by(ca.root_certificate)
    for certificate in (issued.certificate, issuer, ca.root_certificate):
        assert certificate.signature_hash_algorithm is not None
        assert certificate.signature_hash_algorithm.name == hash_name
    if key_type.startswith("rsa"):
        public_key = issuer.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        assert public_key.key_size == int(key_type.removeprefix("rsa-"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subject": x509.Name([]), "sans": ()}, "subject or a subject alternative name"),
        ({"key_usage": frozenset({"digital_signature", "key_cert_sign"})}, "CA certificates"),
        ({"key_usage": frozenset({"bogus"})}, "unknown key usage"),
        ({"key_usage": frozenset({"key_encipherment"})}, "suits this key type"),
        ({"key_usage": frozenset({"encipher_only"})}, "inconsistent key usage"),
        ({"extended_key_usage": ("serverAuth",)}, "not an extended key usage OID"),
        ({"sans": (Identifier(IdentifierType.DNS, "bücher.example"),)}, "cannot encode"),
        ({"not_after": None}, "notAfter"),
        ({"not_after": NOW - dt.timedelta(days=1)}, "validity period is empty"),
        (
            {"subject": x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@example.com")])},
            "emailAddress",
        ),
    ],
)
def test_issue_rejects(ca: InternalCa, changes: dict[str, object], message: str) -> None:
    with pytest.raises(BackendRejected, match=message):
        issue(ca, make_request(leaf_key("p256")), make_decision(**changes))


def test_issue_rejects_bad_csr_signature(ca: InternalCa) -> None:
    request = make_request(leaf_key("rsa2048"))
    tampered = bytearray(request.csr_der)
    tampered[-1] ^= 0x01  # inside the signature BIT STRING
    csr = x509.load_der_x509_csr(bytes(tampered))
    bad = EnrollmentRequest(
        protocol=request.protocol,
        operation=request.operation,
        profile=request.profile,
        csr=csr,
        csr_der=bytes(tampered),
        principal=request.principal,
    )
    with pytest.raises(BackendRejected, match="signature"):
        issue(ca, bad, make_decision())


def test_backend_small_operations(ca: InternalCa, clock: FixedClock) -> None:
    with pytest.raises(Unsupported):
        asyncio.run(ca.poll("anything"))
    assert asyncio.run(ca.revoke("01", RevocationReason.KEY_COMPROMISE)) is None
    assert asyncio.run(ca.crl()) is None
    assert asyncio.run(ca.close()) is None
    assert asyncio.run(ca.health()).ok
    clock.advance(dt.timedelta(days=1826))
    assert not asyncio.run(ca.health()).ok


def test_issuer_lookup(ca: InternalCa, leaf: IssuedCertificate) -> None:
    info = ca.issuer_by_id("1")
    assert ca.issuer_der("1") == info.certificate.public_bytes(serialization.Encoding.DER)
    assert ca.issuer_for(leaf.certificate) == info
    assert ca.issuer_for(ca.root_certificate) is None
    with pytest.raises(GatewayError) as caught:
        ca.issuer_by_id("7")
    assert caught.value.kind is ErrorKind.NOT_FOUND


def test_issuer_for_foreign_certificate(
    ca: InternalCa, tmp_path: Path, passphrase: bytes, clock: FixedClock
) -> None:
    init_internal_ca(tmp_path / "other", passphrase, "ec-p256", clock=clock)
    other = InternalCa.load(
        "other", tmp_path / "other", passphrase, public_http_url=URL, clock=clock
    )
    foreign = issue(other, make_request(leaf_key("p256")), make_decision()).certificate
    # Same issuer name, different key: the AKI tells them apart.
    assert foreign.issuer == ca.active_issuer().certificate.subject
    assert ca.issuer_for(foreign) is None


# -- rollover ---------------------------------------------------------------------------------


def test_rollover(ca_dir: Path, passphrase: bytes, clock: FixedClock) -> None:
    switch = NOW + dt.timedelta(days=30)
    info = rollover(ca_dir, passphrase, switch, clock)
    assert info.id == "2" and info.active_from == switch
    assert stat.S_IMODE((ca_dir / "issuers" / "2" / "key.pem").stat().st_mode) == 0o600
    ca = InternalCa.load(BACKEND, ca_dir, passphrase, public_http_url=URL, clock=clock)
    assert [i.id for i in ca.issuers()] == ["1", "2"]

    before = issue(ca, make_request(leaf_key("p256")), make_decision())
    assert ca.active_issuer().id == "1"
    assert ca.next_ca_chain() == [info.certificate, ca.root_certificate]
    info.certificate.verify_directly_issued_by(ca.root_certificate)
    assert info.certificate.subject == cn("Gatehouse Issuing CA 2")
    assert ca.issuer_for(before.certificate) == ca.issuer_by_id("1")

    clock.advance(dt.timedelta(days=31))
    assert ca.active_issuer().id == "2"
    assert ca.next_ca_chain() is None
    assert asyncio.run(ca.ca_chain()) == [info.certificate, ca.root_certificate]
    decision = make_decision(not_before=clock.now(), not_after=clock.now() + dt.timedelta(days=9))
    after = issue(ca, make_request(leaf_key("p256")), decision)
    after.certificate.verify_directly_issued_by(info.certificate)
    assert after.chain[0] == info.certificate.public_bytes(serialization.Encoding.DER)
    assert ca.issuer_for(after.certificate) == ca.issuer_by_id("2")
    (point,) = ext(after.certificate, x509.CRLDistributionPoints).value
    assert point.full_name[0].value == f"{URL}/crl/{BACKEND}/2.crl"

    # The old generation still signs the CRL for the certificates it issued.
    revoked = [RevokedEntry(before.serial, clock.now(), RevocationReason.SUPERSEDED)]
    crl = x509.load_der_x509_crl(
        ca.sign_crl("1", revoked, 5, clock.now(), clock.now() + dt.timedelta(days=1))
    )
    old_issuer = ca.issuer_by_id("1").certificate
    assert crl.issuer == old_issuer.subject
    assert crl.is_signature_valid(old_issuer.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(before.certificate.serial_number)


def test_rollover_refuses_second_schedule(
    ca_dir: Path, passphrase: bytes, clock: FixedClock
) -> None:
    rollover(ca_dir, passphrase, NOW + dt.timedelta(days=30), clock)
    with pytest.raises(CaSetupError, match="already scheduled"):
        rollover(ca_dir, passphrase, NOW + dt.timedelta(days=60), clock)


def test_rollover_wrong_passphrase(ca_dir: Path, clock: FixedClock) -> None:
    with pytest.raises(CaSetupError, match="wrong CA passphrase"):
        rollover(ca_dir, b"nope", NOW + dt.timedelta(days=1), clock)
    assert not (ca_dir / "issuers" / "2").exists()


# -- CRL --------------------------------------------------------------------------------------


def test_sign_crl(ca: InternalCa, tmp_path: Path) -> None:
    revoked_at = NOW - dt.timedelta(hours=2)
    entries = [
        RevokedEntry("7f01", revoked_at, RevocationReason.KEY_COMPROMISE),
        RevokedEntry("7f02", revoked_at, RevocationReason.UNSPECIFIED),
        RevokedEntry("7f03", revoked_at, RevocationReason.CESSATION_OF_OPERATION),
        RevokedEntry("7f04", revoked_at, RevocationReason.REMOVE_FROM_CRL),
    ]
    der = ca.sign_crl("1", entries, 42, NOW, NOW + dt.timedelta(days=1))
    crl = x509.load_der_x509_crl(der)
    issuer = ca.issuer_by_id("1").certificate
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert crl.issuer == issuer.subject
    assert crl.last_update_utc == NOW and crl.next_update_utc == NOW + dt.timedelta(days=1)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    assert crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value == (
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ext(issuer, x509.SubjectKeyIdentifier).value
        )
    )

    def reason(serial: int) -> x509.ReasonFlags | None:
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        assert entry is not None
        assert entry.revocation_date_utc == revoked_at
        try:
            return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            return None

    assert reason(0x7F01) is x509.ReasonFlags.key_compromise
    assert reason(0x7F02) is None  # unspecified is omitted (RFC 5280 §5.3.1)
    assert reason(0x7F03) is x509.ReasonFlags.cessation_of_operation
    assert crl.get_revoked_certificate_by_serial_number(0x7F04) is None
    assert len(crl) == 3

    (tmp_path / "crl.der").write_bytes(der)
    (tmp_path / "chain.pem").write_bytes(pem(issuer, ca.root_certificate))
    result = run_openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        str(tmp_path / "crl.der"),
        "-CAfile",
        str(tmp_path / "chain.pem"),
        "-noout",
    )
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stdout + result.stderr


def test_openssl_rejects_crl_from_another_ca(
    ca: InternalCa, tmp_path: Path, passphrase: bytes, clock: FixedClock
) -> None:
    init_internal_ca(tmp_path / "other", passphrase, "ec-p256", clock=clock)
    other = InternalCa.load("o", tmp_path / "other", passphrase, public_http_url=URL, clock=clock)
    (tmp_path / "crl.der").write_bytes(ca.sign_crl("1", [], 1, NOW, NOW + dt.timedelta(hours=1)))
    (tmp_path / "chain.pem").write_bytes(
        pem(other.active_issuer().certificate, other.root_certificate)
    )
    result = run_openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        str(tmp_path / "crl.der"),
        "-CAfile",
        str(tmp_path / "chain.pem"),
        "-noout",
    )
    assert "verify OK" not in result.stdout + result.stderr


def test_sign_crl_rejects_bad_window(ca: InternalCa) -> None:
    with pytest.raises(ValueError, match="next_update"):
        ca.sign_crl("1", [], 1, NOW, NOW)


# -- OCSP -------------------------------------------------------------------------------------


def ocsp_request(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    algorithm: hashes.HashAlgorithm,
    nonce: bytes | None = None,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("good", None),
        ("revoked", RevocationReason.KEY_COMPROMISE),
        ("revoked", RevocationReason.UNSPECIFIED),
        ("unknown", None),
    ],
)
@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256()], ids=["sha1", "sha256"])
def test_sign_ocsp(
    ca: InternalCa,
    leaf: IssuedCertificate,
    status: str,
    reason: RevocationReason | None,
    algorithm: hashes.HashAlgorithm,
) -> None:
    issuer = ca.issuer_by_id("1").certificate
    nonce = secrets.token_bytes(16)
    request = ocsp_request(leaf.certificate, issuer, algorithm, nonce)
    revoked_at = NOW - dt.timedelta(hours=1)
    asked: list[str] = []

    def status_of(serial: str) -> tuple[str, RevokedEntry | None]:
        asked.append(serial)
        entry = RevokedEntry(serial, revoked_at, reason) if reason is not None else None
        return status, entry

    assert ca.issuer_for_request(request) == ca.issuer_by_id("1")
    der = ca.sign_ocsp("1", request, status_of, NOW, NOW + dt.timedelta(hours=1))
    response = ocsp.load_der_ocsp_response(der)
    assert asked == [leaf.serial]
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.serial_number == leaf.certificate.serial_number
    assert response.certificate_status is ocsp.OCSPCertStatus[status.upper()]
    assert response.hash_algorithm.name == algorithm.name
    assert response.this_update_utc == NOW
    assert response.next_update_utc == NOW + dt.timedelta(hours=1)
    assert response.responder_key_hash == ext(issuer, x509.SubjectKeyIdentifier).value.digest
    assert response.certificates == []
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    if status == "revoked":
        assert response.revocation_time_utc == revoked_at
        if reason is RevocationReason.UNSPECIFIED:
            assert response.revocation_reason is None  # omitted, as on the CRL
        else:
            assert response.revocation_reason is x509.ReasonFlags.key_compromise
    assert response.signature_hash_algorithm is not None
    verify_signature(
        issuer.public_key(),
        response.signature,
        response.tbs_response_bytes,
        response.signature_hash_algorithm,
    )


@pytest.mark.parametrize("junk", [b"", b"\x30\x03\x02\x01\x01", secrets.token_bytes(64)])
def test_sign_ocsp_malformed(ca: InternalCa, junk: bytes) -> None:
    der = ca.sign_ocsp("1", junk, lambda s: ("good", None), NOW, NOW + dt.timedelta(hours=1))
    assert ocsp.load_der_ocsp_response(der).response_status is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )
    assert ca.issuer_for_request(junk) is None


def test_sign_ocsp_wrong_issuer(
    ca: InternalCa, tmp_path: Path, passphrase: bytes, clock: FixedClock
) -> None:
    init_internal_ca(tmp_path / "other", passphrase, "ec-p256", clock=clock)
    other = InternalCa.load("o", tmp_path / "other", passphrase, public_http_url=URL, clock=clock)
    foreign = issue(other, make_request(leaf_key("p256")), make_decision()).certificate
    request = ocsp_request(foreign, other.active_issuer().certificate, hashes.SHA1())

    def status_of(serial: str) -> tuple[str, RevokedEntry | None]:
        raise AssertionError("must not be asked about a foreign certificate")

    der = ca.sign_ocsp("1", request, status_of, NOW, NOW + dt.timedelta(hours=1))
    assert ocsp.load_der_ocsp_response(der).response_status is (
        ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    assert ca.issuer_for_request(request) is None


def test_openssl_accepts_ocsp_response(
    ca: InternalCa, leaf: IssuedCertificate, tmp_path: Path
) -> None:
    issuer = ca.issuer_by_id("1").certificate
    request = ocsp_request(leaf.certificate, issuer, hashes.SHA1())
    der = ca.sign_ocsp("1", request, lambda s: ("good", None), NOW, NOW + dt.timedelta(hours=1))
    files = {
        "issuer.pem": pem(issuer),
        "leaf.pem": pem(leaf.certificate),
        "resp.der": der,
        "chain.pem": pem(issuer, ca.root_certificate),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    result = run_openssl(
        "ocsp",
        "-issuer",
        str(tmp_path / "issuer.pem"),
        "-cert",
        str(tmp_path / "leaf.pem"),
        "-respin",
        str(tmp_path / "resp.der"),
        "-CAfile",
        str(tmp_path / "chain.pem"),
        "-resp_text",
    )
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path / 'leaf.pem'}: good" in result.stdout
    assert "Response verify OK" in result.stderr


# -- TLS server certificate -------------------------------------------------------------------


def test_tls_server_certificate(ca: InternalCa, tmp_path: Path) -> None:
    key_path = tmp_path / "tls" / "server.key"
    cert_path = tmp_path / "tls" / "server.pem"
    certificate = issue_tls_server_cert(
        ca, ["gatehouse.example.com", "localhost"], ["127.0.0.1", "::1"], key_path, cert_path
    )
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert chain == [certificate, ca.active_issuer().certificate]
    assert certificate.public_key() == key.public_key()
    assert list(ext(certificate, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    names = ext(certificate, x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["gatehouse.example.com", "localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    validity = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert validity == dt.timedelta(days=397)

    # A real TLS handshake: the server loads the files, the client trusts only the root.
    (tmp_path / "root.pem").write_bytes(pem(ca.root_certificate))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    for hostname in ("gatehouse.example.com", "127.0.0.1"):
        client_context = ssl.create_default_context(cafile=str(tmp_path / "root.pem"))
        peer = _handshake(server_context, client_context, hostname)
        names = peer["subjectAltName"]
        assert isinstance(names, tuple) and ("DNS", "gatehouse.example.com") in names


def _handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, hostname: str
) -> dict[str, object]:
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client = client_context.wrap_bio(client_in, client_out, server_hostname=hostname)
    done = [False, False]
    for _ in range(10):
        for index, side in enumerate((client, server)):
            if not done[index]:
                try:
                    side.do_handshake()
                    done[index] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done):
            break
    assert all(done)
    peer = client.getpeercert()
    assert peer is not None
    return dict(peer)


def test_tls_server_certificate_needs_a_name(ca: InternalCa, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hostname or IP"):
        issue_tls_server_cert(ca, [], [], tmp_path / "k", tmp_path / "c")


def test_build_internal_ca_is_the_registered_factory() -> None:
    assert registered()["internal"].factory is build_internal_ca
    assert registered()["internal"].config_model is InternalCaConfig


def test_umask_does_not_widen_key_modes(
    tmp_path: Path, passphrase: bytes, clock: FixedClock
) -> None:
    old = os.umask(0)
    try:
        init_internal_ca(tmp_path / "ca", passphrase, "ec-p256", clock=clock)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ca" / "root.key").stat().st_mode) == 0o600
