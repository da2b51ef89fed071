"""Orders and money: an order row per (tenant, order id) with what the customer paid and
what was refunded, refunds by their own id, returned items on order lines, reversible
conversions and loyalty credit, and coupons a cancelled order gives back.

Existing orders get their row from their lines. What the customer paid is the `total` of
the order.created event that brought the order, where that event is still stored (the
earliest one, as its lines are the ones kept); where it is not, the sum of the lines (list
price times quantity) is the best we have, though a discounted order was paid less. Every
existing order is placed (nothing was cancelled or refunded before this revision).

Columns are only added: on SQLite, altering a table rebuilds it, and dropping the old
one would cascade into the rows that point at it (a message's attempts).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-18
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision: str | None = "0028"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
#: Stored order.created events are read in batches, so a big table is not held in memory.
_BACKFILL_BATCH = 1000
#: The most `commerce_order.total` (NUMERIC(14, 2)) holds.
_MAX_TOTAL = Decimal("999999999999.99")


def upgrade() -> None:
    op.create_table(
        "commerce_order",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.Integer(),
                  sa.ForeignKey("customer.id", ondelete="CASCADE"), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.Numeric(14, 2), nullable=False),
        sa.Column("refunded", sa.Numeric(14, 2), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ordered_at", _TIME, nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("cancelled_at", _TIME, nullable=True),
        sa.Column("cancel_reason", sa.String(200), nullable=True),
        sa.UniqueConstraint("tenant", "order_id", name="uq_commerce_order"),
    )
    op.create_index("ix_commerce_order_customer", "commerce_order",
                    ["customer_id", "currency"])
    op.create_table(
        "order_refund",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("refund_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.Integer(),
                  sa.ForeignKey("customer.id", ondelete="CASCADE"), nullable=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("refunded_at", _TIME, nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "order_id", "refund_id", name="uq_order_refund"),
    )
    op.create_index("ix_order_refund_customer", "order_refund", ["customer_id"])
    op.add_column("order_line", sa.Column("returned", sa.Integer(), nullable=False,
                                          server_default="0"))
    op.add_column("message", sa.Column("conversion_reversed_at", _TIME, nullable=True))
    op.add_column("loyalty_entry", sa.Column("order_id", sa.String(128), nullable=True))
    op.add_column("loyalty_entry", sa.Column("reverses_id", sa.Integer(), nullable=True))
    op.create_index("ix_loyalty_entry_order", "loyalty_entry", ["tenant", "order_id"])
    op.add_column("offer", sa.Column("reissue_on_cancel", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column("coupon", sa.Column("reissued_at", _TIME, nullable=True))
    op.add_column("coupon", sa.Column("reissued_from_order_id", sa.String(128), nullable=True))
    _orders_from_lines()
    _totals_from_events()


def _orders_from_lines() -> None:
    """An order row per order of the existing lines, its total the lines' sum."""
    line = sa.table(
        "order_line", sa.column("tenant", sa.String()), sa.column("order_id", sa.String()),
        sa.column("customer_id", sa.Integer()), sa.column("currency", sa.String()),
        sa.column("unit_price", sa.Numeric(12, 2)), sa.column("quantity", sa.Integer()),
        sa.column("ordered_at", _TIME),
    )
    order = _order_table()
    placed = sa.func.min(line.c.ordered_at)
    op.execute(order.insert().from_select(
        ["tenant", "order_id", "customer_id", "currency", "total", "refunded", "status",
         "ordered_at", "recorded_at", "updated_at"],
        sa.select(
            line.c.tenant, line.c.order_id, sa.func.max(line.c.customer_id),
            sa.func.min(line.c.currency),
            sa.func.round(sa.func.sum(line.c.unit_price * line.c.quantity), 2),
            sa.literal(0), sa.literal("placed"), placed, placed, placed,
        ).group_by(line.c.tenant, line.c.order_id),
    ))


def _totals_from_events() -> None:
    """What each order was paid, from the order.created event that brought it, where
    that event is still stored. Read newest first, so the earliest event's total is
    the one left (the one whose lines were stored)."""
    connection = op.get_bind()
    event = sa.table(
        "commerce_event", sa.column("id", sa.Integer()), sa.column("tenant", sa.String()),
        sa.column("type", sa.String()), sa.column("payload", sa.JSON()),
    )
    order = _order_table()
    update = (
        order.update()
        .where(order.c.tenant == sa.bindparam("of_tenant"),
               order.c.order_id == sa.bindparam("of_order"),
               order.c.currency == sa.bindparam("of_currency"))
        .values(total=sa.bindparam("paid"))
    )
    before: int | None = None
    while True:
        query = (sa.select(event.c.id, event.c.tenant, event.c.payload)
                 .where(event.c.type == "order.created")
                 .order_by(event.c.id.desc()).limit(_BACKFILL_BATCH))
        if before is not None:
            query = query.where(event.c.id < before)
        rows = connection.execute(query).all()
        if not rows:
            return
        before = rows[-1][0]
        totals = [paid for _id, tenant, payload in rows
                  if (paid := _paid(tenant, payload)) is not None]
        if totals:
            connection.execute(update, totals)


def _paid(tenant: str, payload: Any) -> dict[str, Any] | None:
    """The update for one stored order.created payload; None when it does not hold a
    usable order id, currency and total."""
    if not isinstance(payload, dict):
        return None
    order_id, currency = payload.get("order_id"), payload.get("currency")
    try:
        total = Decimal(str(payload.get("total")))
    except (InvalidOperation, ValueError):
        return None
    if not (isinstance(order_id, str) and isinstance(currency, str) and total.is_finite()
            and 0 <= total <= _MAX_TOTAL):
        return None
    return {"of_tenant": tenant, "of_order": order_id, "of_currency": currency,
            "paid": total.quantize(Decimal("0.01"))}


def _order_table() -> sa.TableClause:
    return sa.table(
        "commerce_order", sa.column("tenant", sa.String()), sa.column("order_id", sa.String()),
        sa.column("customer_id", sa.Integer()), sa.column("currency", sa.String()),
        sa.column("total", sa.Numeric(14, 2)), sa.column("refunded", sa.Numeric(14, 2)),
        sa.column("status", sa.String()), sa.column("ordered_at", _TIME),
        sa.column("recorded_at", _TIME), sa.column("updated_at", _TIME),
    )


def downgrade() -> None:
    # Not in batch mode: a rebuilt table would cascade (see the module's docstring).
    op.drop_column("coupon", "reissued_from_order_id")
    op.drop_column("coupon", "reissued_at")
    op.drop_column("offer", "reissue_on_cancel")
    op.drop_index("ix_loyalty_entry_order", table_name="loyalty_entry")
    op.drop_column("loyalty_entry", "reverses_id")
    op.drop_column("loyalty_entry", "order_id")
    op.drop_column("message", "conversion_reversed_at")
    op.drop_column("order_line", "returned")
    op.drop_index("ix_order_refund_customer", table_name="order_refund")
    op.drop_table("order_refund")
    op.drop_index("ix_commerce_order_customer", table_name="commerce_order")
    op.drop_table("commerce_order")
