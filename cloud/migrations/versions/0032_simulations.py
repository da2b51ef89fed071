"""Dry runs of scenarios over recorded history, as jobs with progress and a report.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision: str | None = "0031"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "simulation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("scenario_key", sa.String(64), nullable=False),
        sa.Column("scenario_version", sa.Integer(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("since", _TIME, nullable=False),
        sa.Column("until", _TIME, nullable=False),
        sa.Column("sample", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("triggers_done", sa.Integer(), nullable=False),
        sa.Column("triggers_total", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.String(254), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("started_at", _TIME, nullable=True),
        sa.Column("heartbeat_at", _TIME, nullable=True),
        sa.Column("finished_at", _TIME, nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_simulation_status", "simulation", ["status", "id"])
    op.create_index("ix_simulation_scenario", "simulation", ["tenant", "scenario_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_simulation_scenario", table_name="simulation")
    op.drop_index("ix_simulation_status", table_name="simulation")
    op.drop_table("simulation")
