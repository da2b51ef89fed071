"""Quiet hours and a time zone per tenant (`tenant_preferences`, set through the API and
the console), and quiet hours of a store's own for the journeys its visits start.

Nothing existing changes meaning: no tenant has a row and every store has no quiet hours
of its own, so the deployment's settings keep applying until someone sets these.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision: str | None = "0029"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
#: Both times, or "off", or neither: the same rule on both tables.
_QUIET_CHECK = ("(quiet_start IS NULL) = (quiet_end IS NULL) "
                "AND NOT (quiet_off AND quiet_start IS NOT NULL)")


def _quiet_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("quiet_start", sa.Time(), nullable=True),
        sa.Column("quiet_end", sa.Time(), nullable=True),
        sa.Column("quiet_off", sa.Boolean(), nullable=False, server_default=sa.false()),
    ]


def upgrade() -> None:
    op.create_table(
        "tenant_preferences",
        sa.Column("tenant", sa.String(64), primary_key=True),
        *_quiet_columns(),
        sa.Column("time_zone", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.CheckConstraint(_QUIET_CHECK, name="ck_tenant_preferences_quiet_hours"),
    )
    # Batch mode: SQLite adds a check constraint only by rebuilding the table (nothing
    # points at a store by foreign key, so the rebuild cascades into nothing).
    with op.batch_alter_table("store") as table:
        for column in _quiet_columns():
            table.add_column(column)
        table.create_check_constraint("ck_store_quiet_hours", _QUIET_CHECK)


def downgrade() -> None:
    with op.batch_alter_table("store") as table:
        table.drop_constraint("ck_store_quiet_hours", type_="check")
        for column in reversed(_quiet_columns()):
            table.drop_column(column.name)
    op.drop_table("tenant_preferences")
