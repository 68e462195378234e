"""Backends under contract: internal CA, Vault (a real OpenBao), ADCS (the certsrv simulator).

Each is described by a ``Subject``: the backend, its trust anchor, what it honours from the
decision (ADCS templates decide validity themselves), and how to make it refuse.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from ca_backends.adcs import AdcsBackend, AdcsConfig
from ca_backends.base import CaBackend
from ca_backends.internal import InternalCa, init_internal_ca
from ca_backends.vault import VaultBackend, VaultConfig
from gateway.clock import FixedClock, SystemClock
from gateway.model import (
    Decision,
    EnrollmentRequest,
    Identifier,
    IdentifierType,
    Operation,
    Outcome,
    Principal,
    PrincipalKind,
    Protocol,
)
from tests.support.adcs_simulator import AdcsSimulator
from tests.support.openbao import OpenBao
from tests.support.pki import csr_der, make_csr
from tests.support.server import free_port


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def request_and_decision(cn: str = "svc.example.test", *, template: str | None = None,
                         days: int = 30) -> tuple[EnrollmentRequest, Decision]:
    csr, _ = make_csr(cn, dns=[cn])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    request = EnrollmentRequest(Protocol.MANUAL, Operation.ENROLL, "contract", csr, csr_der(csr),
                                Principal(PrincipalKind.ADMIN, "contract"))
    decision = Decision(Outcome.APPROVED, "approved", "contract", backend="under-test",
                        template=template, not_before=now - dt.timedelta(minutes=1),
                        not_after=now + dt.timedelta(days=days), subject=csr.subject,
                        sans=(Identifier(IdentifierType.DNS, cn),),
                        key_usage=frozenset({"digital_signature"}),
                        extended_key_usage=("1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"))
    return request, decision


@dataclass
class Subject:
    """One backend under contract, with what the suite needs to know about it."""

    kind: str
    build: Callable[[], CaBackend]  # a fresh instance (each test closes its own)
    anchor: x509.Certificate
    honours_validity: bool
    revokes: bool
    has_crl: bool
    refusal: Callable[[], tuple[EnrollmentRequest, Decision]]
    unreachable: Callable[[], CaBackend] | None  # None: no network dependency
    unhealthy: Callable[[], CaBackend]  # a backend whose health() must say not ok
    approve: Callable[[str], None] | None = None  # makes a Pending request issue
    pending_template: str | None = None


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    bao = OpenBao(tmp_path_factory.mktemp("openbao")).start()
    bao.setup_pki()
    yield bao
    bao.stop()


@pytest.fixture(scope="session")
def adcs_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdcsSimulator]:
    sim = AdcsSimulator(tmp_path_factory.mktemp("adcs-sim"), auth="ntlm").start()
    yield sim
    sim.stop()


def vault_config(bao: OpenBao, **overrides: Any) -> VaultConfig:
    entry: dict[str, Any] = {"type": "vault", "url": bao.url, "role": "gatehouse",
                             "ca_cert": str(bao.ca_pem), "timeout": 5,
                             "auth": {"method": "approle", "role_id": bao.role_id,
                                      "secret_id_env": "CONTRACT_BAO_SECRET_ID"}}
    entry.update(overrides)
    os.environ["CONTRACT_BAO_SECRET_ID"] = bao.secret_id
    return VaultConfig.model_validate(entry)


def adcs_config(sim: AdcsSimulator, **overrides: Any) -> AdcsConfig:
    os.environ["CONTRACT_ADCS_PASSWORD"] = sim.password
    entry: dict[str, Any] = {"type": "adcs", "url": sim.url, "template": "WebServer",
                             "ca_cert": str(sim.root_pem), "timeout": 5, "poll_interval": 1,
                             "auth": {"method": "ntlm", "username": sim.username,
                                      "password_env": "CONTRACT_ADCS_PASSWORD"}}
    entry.update(overrides)
    return AdcsConfig.model_validate(entry)


def _internal(tmp: Path) -> Subject:
    directory = tmp / "ca"
    init_internal_ca(directory, b"contract-passphrase", "ec-p256", clock=SystemClock())

    def build() -> CaBackend:
        return InternalCa.load("under-test", directory, b"contract-passphrase",
                               public_http_url="http://127.0.0.1:8080", clock=SystemClock())

    def refusal() -> tuple[EnrollmentRequest, Decision]:
        request, decision = request_and_decision()
        return request, replace(decision, not_after=None)

    anchor = x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())
    def expired() -> CaBackend:
        later = FixedClock(dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 20))
        return InternalCa.load("under-test", directory, b"contract-passphrase",
                               public_http_url="http://127.0.0.1:8080", clock=later)

    return Subject("internal", build, anchor, honours_validity=True, revokes=True, has_crl=False,
                   refusal=refusal, unreachable=None, unhealthy=expired)


def _vault(bao: OpenBao, tmp: Path) -> Subject:
    def refusal() -> tuple[EnrollmentRequest, Decision]:
        return request_and_decision("svc.not-allowed.test", template="narrow")

    dead = free_port()
    return Subject(
        "vault", lambda: VaultBackend("under-test", vault_config(bao), tmp),
        x509.load_pem_x509_certificate(bao.root_pem.read_bytes()), honours_validity=True,
        revokes=True, has_crl=True, refusal=refusal,
        unreachable=lambda: VaultBackend("under-test", vault_config(
            bao, url=f"https://127.0.0.1:{dead}"), tmp),
        unhealthy=lambda: VaultBackend("under-test", vault_config(
            bao, url=f"https://127.0.0.1:{dead}"), tmp))


def _adcs(sim: AdcsSimulator, tmp: Path) -> Subject:
    dead = free_port()
    return Subject(
        "adcs", lambda: AdcsBackend("under-test", adcs_config(sim), tmp),
        x509.load_pem_x509_certificate(sim.root_pem.read_bytes()), honours_validity=False,
        revokes=False, has_crl=True,
        refusal=lambda: request_and_decision(template="DeniedTemplate"),
        unreachable=lambda: AdcsBackend("under-test", adcs_config(
            sim, url=f"https://127.0.0.1:{dead}"), tmp),
        unhealthy=lambda: AdcsBackend("under-test", adcs_config(
            sim, url=f"https://127.0.0.1:{dead}"), tmp),
        approve=lambda ref: sim.approve(int(ref)), pending_template="ManagerApproval")


@pytest.fixture(params=["internal", "vault", "adcs"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    if request.param == "internal":
        return _internal(tmp_path)
    if request.param == "vault":
        return _vault(request.getfixturevalue("openbao"), tmp_path)
    return _adcs(request.getfixturevalue("adcs_sim"), tmp_path)
