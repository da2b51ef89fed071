"""Occupancy: the people each gateway estimates per zone and minute (counts only).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision: str | None = "0027"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "occupancy_minute",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("store", sa.String(64), primary_key=True),
        sa.Column("gateway", sa.String(64), primary_key=True),
        sa.Column("zone", sa.String(64), primary_key=True),
        sa.Column("minute", _TIME, primary_key=True),
        sa.Column("people", sa.Float(), nullable=False),
        sa.Column("addresses", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("scans", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
    )
    op.create_index("ix_occupancy_minute_tenant_minute", "occupancy_minute",
                    ["tenant", "minute"])


def downgrade() -> None:
    op.drop_index("ix_occupancy_minute_tenant_minute", table_name="occupancy_minute")
    op.drop_table("occupancy_minute")
