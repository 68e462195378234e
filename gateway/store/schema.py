"""The complete schema: every table module imported, so ``metadata`` holds all tables.

Alembic (``migrations/env.py``) compares migrations against this metadata, and the database
handle imports it so that foreign keys between table modules (console sessions →
credentials, ACME orders → accounts) resolve before the first session.  Table modules
import only ``gateway.store.base``, never each other or this module.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from gateway.store import acme_tables, console_sessions, tables
from gateway.store.base import Base

TABLE_MODULES = (tables, acme_tables, console_sessions)
metadata: MetaData = Base.metadata
