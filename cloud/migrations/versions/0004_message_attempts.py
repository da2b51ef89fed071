"""Message send attempts, so a message left pending by a dead worker can be resumed once.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_message_pending", "message", ["status", "last_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_message_pending", table_name="message")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("last_attempt_at")
        batch.drop_column("attempts")
