"""Recent location fixes of customers who granted location-based marketing, kept for a
day for the console's map (`cloud.places.recent`).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision: str | None = "0017"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recent_location_fix",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.Integer(),
                  sa.ForeignKey("customer.id", ondelete="CASCADE"), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("accuracy_m", sa.Float(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
    )
    op.create_index("ix_recent_location_fix_tenant_at", "recent_location_fix", ["tenant", "at"])
    op.create_index("ix_recent_location_fix_received", "recent_location_fix", ["received_at"])
    op.create_index("ix_recent_location_fix_customer", "recent_location_fix", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_recent_location_fix_customer", table_name="recent_location_fix")
    op.drop_index("ix_recent_location_fix_received", table_name="recent_location_fix")
    op.drop_index("ix_recent_location_fix_tenant_at", table_name="recent_location_fix")
    op.drop_table("recent_location_fix")
