"""The outbox of webhooks to the shop: a scenario's webhook step queues a row here instead
of posting inside the trigger batch's transaction; the delivery worker posts due rows,
leased like the send queue's messages (`cloud.webhooks.outbound`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbound_webhook",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column(
            "customer_id", sa.Integer(), sa.ForeignKey("customer.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("last_attempt_at", _TIME, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("sent_at", _TIME, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbound_webhook_due", "outbound_webhook", ["status", "next_attempt_at"])
    op.create_index("ix_outbound_webhook_customer_id", "outbound_webhook", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_outbound_webhook_customer_id", table_name="outbound_webhook")
    op.drop_index("ix_outbound_webhook_due", table_name="outbound_webhook")
    op.drop_table("outbound_webhook")
