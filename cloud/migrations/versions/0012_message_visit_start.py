"""Messages no longer carry the start of the visit that caused them, nor the index the
retired recognition rule looked sends up by (customer, rule, store, visit): scenarios
key their sends by journey and step, and the visit is the journey's trigger.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_message_customer_rule", table_name="message")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("visit_start")


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("visit_start", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_message_customer_rule", "message", ["customer_id", "rule", "store", "visit_start"]
    )
