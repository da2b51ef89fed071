"""Key rotation: each tenant key's state (listed, active, retired), each gateway's public
sealing key (the tenant keys it is sent are sealed to it), and the key ids a gateway
reports holding.

Gateways registered before this revision have no sealing key: they must enrol again to
receive keys remotely. Tenants get their key states when a process first sees them.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision: str | None = "0024"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenant_key",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("listed_at", _TIME, nullable=False),
        sa.Column("activated_at", _TIME, nullable=True),
        sa.Column("retired_at", _TIME, nullable=True),
        sa.Column("links_deleted", sa.Integer(), nullable=True),
    )
    # Columns are only added (no batch mode): a rebuilt table on SQLite is not needed.
    op.add_column("gateway_registry", sa.Column("seal_public_key", sa.String(64),
                                                nullable=True))
    op.add_column("gateway", sa.Column("key_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("gateway", "key_ids")
    op.drop_column("gateway_registry", "seal_public_key")
    op.drop_table("tenant_key")
