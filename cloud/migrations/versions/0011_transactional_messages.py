"""Transactional messages: the send queue keeps whether a message is a request for consent
itself (the double opt-in email and its reminders), so the delivery worker's send-time
consent check, the frequency caps, the funnel and attribution can tell it from marketing.

Existing rows were all decided as marketing: the server default (false) says so, and
keeps rows written by a worker still on the previous release marketing too.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(
            sa.Column("transactional", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_column("transactional")
