"""Helpers shared by the ``gatehouse`` command modules."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.config import data_dir_from


class CliError(Exception):
    """A one-line message for the user."""


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")




def _gateway(args: argparse.Namespace) -> Any:
    from gateway.runtime import Gateway

    return Gateway.from_data_dir(data_dir_from(args.data_dir))


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _read_csr(path: str) -> tuple[x509.CertificateSigningRequest, bytes]:
    from gateway.pem import load_csr

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    return load_csr(data)


def _pem_chain(der: bytes, chain: Sequence[bytes]) -> str:
    out = []
    for item in (der, *chain):
        out.append(x509.load_der_x509_certificate(item).public_bytes(Encoding.PEM).decode())
    return "".join(out)


