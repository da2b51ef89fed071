"""Orders: stored once per order id with their lines, cancelled, refunded; and what
customers spent.

Webhooks from the shop (`cloud.webhooks.inbound`) store orders here; scenarios read
purchases and lifetime spend from them. Spend is what customers paid (an order's total,
after discounts and coupons) less what was refunded, per currency, over the orders not
cancelled: never list price times quantity, which a discounted order never paid, and
never euros added to dollars.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, func, or_, update
from sqlmodel import Session, SQLModel, col, select

from cloud.bulk import one_of
from cloud.commerce.models import (
    Order,
    OrderCreated,
    OrderLine,
    OrderRefund,
    OrderRefunded,
    OrderStatus,
)
from cloud.db import dialect_insert

ORDER_TABLE: Table = SQLModel.metadata.tables[Order.__tablename__]
ORDER_LINE_TABLE: Table = SQLModel.metadata.tables[OrderLine.__tablename__]
REFUND_TABLE: Table = SQLModel.metadata.tables[OrderRefund.__tablename__]
CENT = Decimal("0.01")

#: Joins an order line to its order.
ORDER_OF_LINE = and_(
    col(Order.tenant) == col(OrderLine.tenant), col(Order.order_id) == col(OrderLine.order_id)
)


class RefundRefusedError(ValueError):
    """A refund the order cannot take (another currency, more than is left, items it
    does not hold): the message says what is left, for the shop to correct and resend."""


def cents(amount: Any) -> Decimal:
    """An amount as the database gave it, in cents (SQLite sums NUMERIC as floats)."""
    return Decimal(str(amount or 0)).quantize(CENT, ROUND_HALF_UP)


def record_order(
    session: Session, *, tenant: str, event: OrderCreated, customer_id: int | None,
    now: datetime,
) -> Order | None:
    """The order and its lines, once per order id. None when the order came before,
    under another event id: it changes nothing the second time."""
    inserted = session.connection().execute(
        dialect_insert(session, ORDER_TABLE)
        .values(
            tenant=tenant, order_id=event.order_id, customer_id=customer_id,
            currency=event.currency, total=event.total, refunded=Decimal("0.00"),
            status=OrderStatus.PLACED.value, ordered_at=event.occurred_at, recorded_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["tenant", "order_id"])
        .returning(ORDER_TABLE.c.id)
    ).first()
    if inserted is None:
        return None
    rows = [
        {
            "tenant": tenant, "order_id": event.order_id, "line": line,
            "customer_id": customer_id, "sku": item.sku, "name": item.name,
            "category": item.category, "quantity": item.quantity,
            "unit_price": item.unit_price, "currency": event.currency,
            "ordered_at": event.occurred_at, "returned": 0,
        }
        for line, item in enumerate(event.items, start=1)
    ]
    session.connection().execute(
        dialect_insert(session, ORDER_LINE_TABLE)
        .on_conflict_do_nothing(index_elements=["tenant", "order_id", "line"]),
        rows,
    )
    return session.get(Order, int(inserted[0]))


def find_order(
    session: Session, *, tenant: str, order_id: str, lock: bool = False
) -> Order | None:
    """The order, read afresh; with `lock`, held until the transaction ends, so a
    cancellation and a refund of one order (or two refunds) apply one after the other."""
    statement = select(Order).where(Order.tenant == tenant, Order.order_id == order_id)
    if lock:
        statement = statement.with_for_update()
    return session.exec(statement.execution_options(populate_existing=True)).first()


def left_to_refund(order: Order) -> Decimal:
    return cents(order.total) - cents(order.refunded)


def cancel_order(
    session: Session, *, order: Order, at: datetime, reason: str | None, now: datetime
) -> bool:
    """Mark the order cancelled (at `at`, the shop's time); False when it already was."""
    result = session.connection().execute(
        update(ORDER_TABLE)
        .where(ORDER_TABLE.c.id == order.id,
               ORDER_TABLE.c.status != OrderStatus.CANCELLED.value)
        .values(status=OrderStatus.CANCELLED.value, cancelled_at=at, cancel_reason=reason,
                updated_at=now)
    )
    session.refresh(order)
    return bool(result.rowcount == 1)


def refund_order(
    session: Session, *, order: Order, event: OrderRefunded, now: datetime
) -> OrderRefund | None:
    """Record the refund on the order: its amount, and the items taken back on the
    lines that hold them. None when this refund id was applied before (under any
    event id). Raises `RefundRefusedError` when the order cannot take it; nothing is
    changed then."""
    earlier = session.exec(select(OrderRefund.id).where(
        OrderRefund.tenant == order.tenant, OrderRefund.order_id == order.order_id,
        OrderRefund.refund_id == event.refund_id,
    )).first()
    if earlier is not None:
        return None
    if event.currency != order.currency:
        raise RefundRefusedError(
            f"refund {event.refund_id} is in {event.currency}; order {order.order_id} was "
            f"paid in {order.currency}")
    left = left_to_refund(order)
    if event.amount > left:
        raise RefundRefusedError(
            f"refund {event.refund_id} of {event.amount} {event.currency} is more than the "
            f"{left} {order.currency} left to refund on order {order.order_id}")
    returns = _returns(session, order=order, event=event)
    inserted = session.connection().execute(
        dialect_insert(session, REFUND_TABLE)
        .values(
            tenant=order.tenant, order_id=order.order_id, refund_id=event.refund_id,
            customer_id=order.customer_id, event_id=event.event_id, amount=event.amount,
            currency=event.currency, items=[item.model_dump() for item in event.items],
            refunded_at=event.occurred_at, recorded_at=now,
        )
        .on_conflict_do_nothing(index_elements=["tenant", "order_id", "refund_id"])
        .returning(REFUND_TABLE.c.id)
    ).first()
    if inserted is None:
        return None
    refunded = cents(order.refunded) + event.amount
    full = refunded >= cents(order.total) and order.status == OrderStatus.PLACED
    session.connection().execute(
        update(ORDER_TABLE).where(ORDER_TABLE.c.id == order.id).values(
            refunded=refunded, updated_at=now,
            status=OrderStatus.REFUNDED.value if full else OrderStatus(order.status).value,
        )
    )
    for line_id, returned in returns.items():
        session.connection().execute(
            update(ORDER_LINE_TABLE).where(ORDER_LINE_TABLE.c.id == line_id)
            .values(returned=returned)
        )
    session.refresh(order)
    return session.get(OrderRefund, int(inserted[0]))


def _returns(session: Session, *, order: Order, event: OrderRefunded) -> dict[int, int]:
    """The items taken back, spread over the order's lines of each SKU in line order:
    each line's new `returned`. Raises `RefundRefusedError` for a SKU the order does not
    hold, or more items than are left of it."""
    wanted: dict[str, int] = defaultdict(int)
    for item in event.items:
        wanted[item.sku] += item.quantity
    if not wanted:
        return {}
    lines = session.exec(
        select(OrderLine).where(
            OrderLine.tenant == order.tenant, OrderLine.order_id == order.order_id,
            col(OrderLine.sku).in_(sorted(wanted)),
        ).order_by(col(OrderLine.line))
    ).all()
    returned: dict[int, int] = {}
    for sku, quantity in sorted(wanted.items()):
        of_sku = [line for line in lines if line.sku == sku]
        left = sum(line.quantity - line.returned for line in of_sku)
        if quantity > left:
            raise RefundRefusedError(
                f"refund {event.refund_id} takes back {quantity} of {sku}; order "
                f"{order.order_id} has {left} of it left")
        for line in of_sku:
            taken = min(quantity, line.quantity - line.returned)
            if taken > 0:
                assert line.id is not None
                returned[line.id] = line.returned + taken
                quantity -= taken
    return returned


def lifetime_spend(session: Session, ids: Sequence[int]) -> dict[int, dict[str, Decimal]]:
    """Lifetime spend per customer and currency: what their orders not cancelled were
    paid, less what was refunded."""
    paid = func.sum(col(Order.total) - col(Order.refunded))
    rows = session.exec(
        select(Order.customer_id, Order.currency, paid)
        .where(one_of(session, Order.customer_id, ids),
               col(Order.status) != OrderStatus.CANCELLED.value)
        .group_by(col(Order.customer_id), col(Order.currency))
    ).all()
    spend: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for customer_id, currency, amount in rows:
        if customer_id is not None:
            spend[customer_id][currency] = cents(amount)
    return dict(spend)


def spend_in(session: Session, *, customer_id: int, currency: str) -> Decimal:
    """One customer's lifetime spend in one currency."""
    return lifetime_spend(session, [customer_id]).get(customer_id, {}).get(
        currency, Decimal("0.00"))


def still_purchased() -> ColumnElement[bool]:
    """Whether an order line (joined to its order, `ORDER_OF_LINE`, outer) is still a
    purchase: its order neither cancelled nor refunded in full, and not every item of
    it taken back. A line with no order row (none should be left: migration 0029 made
    one for each) counts."""
    return and_(
        or_(col(Order.id).is_(None), col(Order.status) == OrderStatus.PLACED.value),
        col(OrderLine.returned) < col(OrderLine.quantity),
    )
