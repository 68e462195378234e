"""The Requests port: a stored request found by its protocol transaction."""

from __future__ import annotations

from typing import Protocol

from gateway.model import Protocol as WireProtocol
from gateway.store import requests
from gateway.store.db import Database


class RequestLookup(Protocol):
    def request_id(self, protocol: WireProtocol, transaction_id: str) -> str | None:
        """The id of the request ``protocol``'s transaction created, if any."""


class StoreRequestLookup:
    def __init__(self, db: Database) -> None:
        self._db = db

    def request_id(self, protocol: WireProtocol, transaction_id: str) -> str | None:
        with self._db.session() as session:
            row = requests.by_transaction(session, protocol.value, transaction_id)
            return row.id if row is not None else None
