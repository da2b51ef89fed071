"""Stores, geofences, geofence presence and message templates, stored.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "store",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "key", name="uq_store_tenant_key"),
    )
    op.create_table(
        "geofence_definition",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("geofence_id", sa.String(128), nullable=False),
        sa.Column("store", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "geofence_id", name="uq_geofence_definition_id"),
    )
    op.create_index(
        "ix_geofence_definition_store", "geofence_definition", ["tenant", "store"]
    )
    op.create_table(
        "geofence_version",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "geofence_presence",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column(
            "customer_id", sa.Integer(), sa.ForeignKey("customer.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("geofence_id", sa.String(128), nullable=False),
        sa.Column("store", sa.String(64), nullable=False),
        sa.Column("entered_at", _TIME, nullable=False),
        sa.Column("last_seen_at", _TIME, nullable=False),
        sa.Column("dwell_due_at", _TIME, nullable=False),
        sa.Column("dwell_emitted", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("customer_id", "geofence_id", name="uq_geofence_presence_stay"),
    )
    op.create_index(
        "ix_geofence_presence_dwell", "geofence_presence", ["dwell_emitted", "dwell_due_at"]
    )
    op.create_index("ix_geofence_presence_seen", "geofence_presence", ["last_seen_at"])
    op.create_index(
        "ix_geofence_presence_geofence", "geofence_presence", ["tenant", "geofence_id"]
    )
    op.create_table(
        "message_template",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "key", "channel", "locale", name="uq_message_template"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("message_template")
    op.drop_index("ix_geofence_presence_geofence", table_name="geofence_presence")
    op.drop_index("ix_geofence_presence_seen", table_name="geofence_presence")
    op.drop_index("ix_geofence_presence_dwell", table_name="geofence_presence")
    op.drop_table("geofence_presence")
    op.drop_table("geofence_version")
    op.drop_index("ix_geofence_definition_store", table_name="geofence_definition")
    op.drop_table("geofence_definition")
    op.drop_table("store")
