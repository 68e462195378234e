"""console sessions: server-side sign-in sessions of the web console

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 06:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["credentials.id"],
                                name=op.f("fk_console_sessions_token_id_credentials"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_console_sessions_expires_at"), ["expires_at"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_console_sessions_token_id"), ["token_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_sessions_token_id"))
        batch_op.drop_index(batch_op.f("ix_console_sessions_expires_at"))
    op.drop_table("console_sessions")
