"""Presence events, dead letters and gateway health.

Revision ID: 0001
Revises:
Create Date: 2025-01-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_EVENT_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "presence_event",
        sa.Column("id", _EVENT_ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("store", sa.String(64), nullable=False),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("randomized", sa.Boolean(), nullable=False),
        sa.Column("transition", sa.String(8), nullable=False),
        sa.Column("rssi", sa.Float(), nullable=False),
        sa.Column("first_seen", _TIME, nullable=False),
        sa.Column("last_seen", _TIME, nullable=False),
        sa.Column("dwell_s", sa.Float(), nullable=False),
        sa.Column("sightings", sa.Integer(), nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "ix_presence_event_store_time", "presence_event", ["tenant", "store", "first_seen"]
    )
    op.create_index(
        "ix_presence_event_pseudonym", "presence_event", ["tenant", "pseudonym", "first_seen"]
    )
    op.create_table(
        "dead_letter",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_size", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_dead_letter_received_at", "dead_letter", ["received_at"])
    op.create_table(
        "gateway",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("store", sa.String(64), primary_key=True),
        sa.Column("gateway", sa.String(64), primary_key=True),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("status_sent_at", _TIME, nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("software_version", sa.String(64), nullable=False),
        sa.Column("uptime_s", sa.Float(), nullable=False),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("published", sa.Integer(), nullable=False),
        sa.Column("dropped", sa.Integer(), nullable=False),
        sa.Column("rejected_frames", sa.Integer(), nullable=False),
        sa.Column("devices_tracked", sa.Integer(), nullable=False),
        sa.Column("active_key_id", sa.String(16), nullable=True),
        sa.Column("sources", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway")
    op.drop_index("ix_dead_letter_received_at", table_name="dead_letter")
    op.drop_table("dead_letter")
    op.drop_index("ix_presence_event_pseudonym", table_name="presence_event")
    op.drop_index("ix_presence_event_store_time", table_name="presence_event")
    op.drop_table("presence_event")
