"""API keys: hashed keys per tenant and role, with created, last-used and revoked times.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("last_used_at", _TIME, nullable=True),
        sa.Column("revoked_at", _TIME, nullable=True),
        sa.UniqueConstraint("key_id", name="uq_api_key_key_id"),
        sa.CheckConstraint(
            "(role = 'operator' AND tenant IS NULL) OR (role <> 'operator' AND tenant IS NOT NULL)",
            name="ck_api_key_tenant_role",
        ),
    )
    op.create_index("ix_api_key_tenant", "api_key", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_api_key_tenant", table_name="api_key")
    op.drop_table("api_key")
