"""Commerce events and order lines, message opens, and the erasure record.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def _customer_fk() -> sa.Column[int]:
    return sa.Column(
        "customer_id", sa.Integer(), sa.ForeignKey("customer.id", ondelete="CASCADE"),
        nullable=True,
    )


def upgrade() -> None:
    op.create_table(
        "commerce_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        _customer_fk(),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.UniqueConstraint("tenant", "event_id", name="uq_commerce_event_id"),
    )
    op.create_index(
        "ix_commerce_event_customer", "commerce_event", ["customer_id", "type", "occurred_at"]
    )
    op.create_table(
        "order_line",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        _customer_fk(),
        sa.Column("sku", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(128), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("ordered_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "order_id", "line", name="uq_order_line"),
    )
    op.create_index("ix_order_line_customer", "order_line", ["customer_id", "category"])
    op.create_table(
        "erasure",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("erased_at", _TIME, nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
    )
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("opened_at", _TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_column("opened_at")
    op.drop_table("erasure")
    op.drop_index("ix_order_line_customer", table_name="order_line")
    op.drop_table("order_line")
    op.drop_index("ix_commerce_event_customer", table_name="commerce_event")
    op.drop_table("commerce_event")
