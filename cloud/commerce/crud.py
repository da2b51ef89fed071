"""Orders: their lines, stored once per order, and what customers spent.

Webhooks from the shop (`cloud.webhooks.inbound`) store orders here; scenarios read
purchases and lifetime spend from the same lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Table, func
from sqlmodel import Session, SQLModel, col, select

from cloud.bulk import one_of
from cloud.commerce.models import OrderCreated, OrderLine
from cloud.db import dialect_insert

ORDER_LINE_TABLE: Table = SQLModel.metadata.tables[OrderLine.__tablename__]


def record_order(
    session: Session, *, tenant: str, event: OrderCreated, customer_id: int | None
) -> None:
    """Order lines, once per order: a shop re-sending the order under a new event id
    does not double the purchase history."""
    rows = [
        {
            "tenant": tenant, "order_id": event.order_id, "line": line,
            "customer_id": customer_id, "sku": item.sku, "name": item.name,
            "category": item.category, "quantity": item.quantity,
            "unit_price": item.unit_price, "currency": event.currency,
            "ordered_at": event.occurred_at,
        }
        for line, item in enumerate(event.items, start=1)
    ]
    session.connection().execute(
        dialect_insert(session, ORDER_LINE_TABLE)
        .on_conflict_do_nothing(index_elements=["tenant", "order_id", "line"]),
        rows,
    )


def lifetime_spend(session: Session, ids: Sequence[int]) -> dict[int, Decimal]:
    """Lifetime spend: the sum of every order line the customer ever bought."""
    total = func.sum(col(OrderLine.unit_price) * col(OrderLine.quantity))
    rows = session.exec(
        select(OrderLine.customer_id, total)
        .where(one_of(session, OrderLine.customer_id, ids)).group_by(col(OrderLine.customer_id))
    ).all()
    return {cid: Decimal(str(amount or 0)) for cid, amount in rows if cid is not None}
