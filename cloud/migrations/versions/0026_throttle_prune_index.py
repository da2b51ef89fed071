"""Failed attempts are pruned by age: an index on `login_failure.last_at`, so deleting
the rows no throttle counts any more reads only those rows.

Revision ID: 0026
Revises: 0024
Create Date: 2026-12-16
"""

from __future__ import annotations

from alembic import op

revision = "0026"
down_revision: str | None = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_login_failure_last_at", "login_failure", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_login_failure_last_at", table_name="login_failure")
