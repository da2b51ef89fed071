"""Store stays: one visit per customer and store, whichever source (a gateway, the app's
report of the store's beacon) saw it first.

Revision ID: 0034
Revises: 0032
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision: str | None = "0032"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "store_stay",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.Integer(),
                  sa.ForeignKey("customer.id", ondelete="CASCADE"), nullable=False),
        sa.Column("store", sa.String(64), nullable=False),
        sa.Column("opened_by", sa.String(16), nullable=False),
        sa.Column("opened_at", _TIME, nullable=False),
        sa.Column("last_seen_at", _TIME, nullable=False),
        sa.UniqueConstraint("customer_id", "store", name="uq_store_stay_customer_store"),
    )
    op.create_index("ix_store_stay_seen", "store_stay", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_store_stay_seen", table_name="store_stay")
    op.drop_table("store_stay")
