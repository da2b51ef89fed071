"""Footfall roll-ups: figures per store (and zone) and hour, and per day, kept by the
worker from the stored events, so that a chart of months reads thousands of rows rather
than millions of events; and the hours waiting to be rebuilt.

Existing events are not rolled up here (a large table would hold the upgrade for
minutes): `vitrina-cloud rollups rebuild` does that after the upgrade.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision: str | None = "0020"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)

COUNTS = (
    "devices", "visitors", "passers_by", "new_visitors", "repeat_visitors",
    "unknown_visitors", "dwell_under_1m", "dwell_1_5m", "dwell_5_15m", "dwell_15_30m",
    "dwell_30_60m", "dwell_over_60m",
)


def _counts() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS]


def upgrade() -> None:
    op.create_table(
        "footfall_hour",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("store", sa.String(64), primary_key=True),
        sa.Column("zone", sa.String(64), primary_key=True),
        sa.Column("hour", _TIME, primary_key=True),
        *_counts(),
    )
    op.create_table(
        "footfall_day",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("store", sa.String(64), primary_key=True),
        sa.Column("zone", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        *_counts(),
        sa.Column("median_dwell_s", sa.Float(), nullable=True),
    )
    op.create_table(
        "footfall_dirty_hour",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("store", sa.String(64), nullable=False),
        sa.Column("hour", _TIME, nullable=False),
        sa.Column("marked_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "store", "hour"),
    )
    op.create_index("ix_footfall_dirty_hour_marked_at", "footfall_dirty_hour", ["marked_at"])


def downgrade() -> None:
    op.drop_index("ix_footfall_dirty_hour_marked_at", table_name="footfall_dirty_hour")
    op.drop_table("footfall_dirty_hour")
    op.drop_table("footfall_day")
    op.drop_table("footfall_hour")
