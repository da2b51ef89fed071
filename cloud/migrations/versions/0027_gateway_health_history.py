"""Gateways' health over time: the device's figures of status 1.1 (CPU and memory of the
agent, the board's temperature, free disk) on the newest report, and a history of the
reports, one per gateway and 5 minutes, kept `gateways.health_history_days`.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision: str | None = "0026"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def _figures() -> list[sa.Column[object]]:
    return [
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("temperature_c", sa.Float(), nullable=True),
        sa.Column("disk_free_bytes", sa.BigInteger(), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("gateway") as table:
        for column in _figures():
            table.add_column(column)
    op.create_table(
        "gateway_health_history",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("store", sa.String(64), primary_key=True),
        sa.Column("gateway", sa.String(64), primary_key=True),
        sa.Column("slot", _TIME, primary_key=True),
        sa.Column("sent_at", _TIME, nullable=False),
        sa.Column("software_version", sa.String(64), nullable=False),
        sa.Column("uptime_s", sa.Float(), nullable=False),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("queue_depth_max", sa.Integer(), nullable=False),
        sa.Column("published", sa.Integer(), nullable=False),
        sa.Column("dropped", sa.Integer(), nullable=False),
        sa.Column("rejected_frames", sa.Integer(), nullable=False),
        sa.Column("devices_tracked", sa.Integer(), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=True),
        *_figures(),
        sa.Column("sources", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_health_history")
    with op.batch_alter_table("gateway") as table:
        for column in reversed(_figures()):
            table.drop_column(column.name)
