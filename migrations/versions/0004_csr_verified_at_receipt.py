"""requests.csr_verified_at_receipt: stored CSRs keep no challengePassword

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 07:00:00.000000

The pipeline stores a CSR without its challengePassword attribute, which breaks the
stored copy's signature; this column records that the original's signature verified
when it was received (docs/security.md, rule 8).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("csr_verified_at_receipt", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("requests", schema=None) as batch_op:
        batch_op.drop_column("csr_verified_at_receipt")
