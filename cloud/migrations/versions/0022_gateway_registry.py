"""Gateways registered from the console: enrolment codes (hashed), revocation, the config
the cloud keeps for each; and what a gateway's heartbeat says about that config.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision: str | None = "0021"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gateway_registry",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("store", sa.String(64), nullable=False),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("code_expires_at", _TIME, nullable=True),
        sa.Column("enrolled_at", _TIME, nullable=True),
        sa.Column("revoked_at", _TIME, nullable=True),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("config_saved_at", _TIME, nullable=True),
        sa.Column("config_published_at", _TIME, nullable=True),
        sa.UniqueConstraint("tenant", "store", "gateway", name="uq_gateway_registry_identity"),
    )
    op.create_index("ix_gateway_registry_code_hash", "gateway_registry", ["code_hash"],
                    unique=True)
    with op.batch_alter_table("gateway") as table:
        table.add_column(sa.Column("config_version", sa.Integer(), nullable=True))
        table.add_column(sa.Column("config_refused_version", sa.Integer(), nullable=True))
        table.add_column(sa.Column("config_refused_reason", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway") as table:
        table.drop_column("config_refused_reason")
        table.drop_column("config_refused_version")
        table.drop_column("config_version")
    op.drop_index("ix_gateway_registry_code_hash", table_name="gateway_registry")
    op.drop_table("gateway_registry")
