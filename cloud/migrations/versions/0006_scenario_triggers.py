"""Scenario triggers: the engine's inbox, one row per thing that happened to a customer.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scenario_trigger",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column(
            "customer_id", sa.Integer(), sa.ForeignKey("customer.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False),
        sa.Column("source_key", sa.String(255), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("processed_at", _TIME, nullable=True),
        sa.UniqueConstraint("tenant", "source_key", name="uq_scenario_trigger_source"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_scenario_trigger_unprocessed", "scenario_trigger", ["processed_at", "id"]
    )
    op.create_index(
        "ix_scenario_trigger_customer", "scenario_trigger", ["customer_id", "kind", "occurred_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_scenario_trigger_customer", table_name="scenario_trigger")
    op.drop_index("ix_scenario_trigger_unprocessed", table_name="scenario_trigger")
    op.drop_table("scenario_trigger")
