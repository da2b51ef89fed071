"""Loyalty credit: a ledger of entries per customer and currency, credits positive and
reversals negative, so the balance is a sum and every change stays on record.

A credit a scenario grants because of an order (its journey was started by a trigger
about that order: the order itself, the spend it added, a coupon it used, a message it
converted) carries the order's id. When the order is cancelled or refunded, what it
earned is taken back by a negative entry pointing at the credit (`reverses_id`): all of
it for a cancellation or a full refund, the refunded share of it for a partial refund.
Each cause reverses at most once (its idempotency key), and what a cause reverses is
computed from the order as it now stands, so the reversals of a credit never add up to
more than the credit, whatever order refunds arrive in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, Numeric, Table, func
from sqlmodel import Field, Session, SQLModel, col, select

from cloud.commerce.crud import CENT, cents
from cloud.commerce.models import Order, OrderStatus
from cloud.db import UtcDateTime, dialect_insert
from cloud.triggers import TriggerKind

#: The triggers whose order earned what a journey they started credits. A cancellation's
#: or a refund's own trigger is not one: credit granted on those (an apology) is not
#: taken back by a later refund of the same order.
EARNING_KINDS = frozenset({
    TriggerKind.ORDER_CREATED.value, TriggerKind.SPEND_CHANGED.value,
    TriggerKind.COUPON_REDEEMED.value, TriggerKind.MESSAGE_CONVERTED.value,
})


class LoyaltyEntry(SQLModel, table=True):
    __tablename__ = "loyalty_entry"
    __table_args__ = (Index("ix_loyalty_entry_order", "tenant", "order_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    customer_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    amount: Decimal = Field(sa_type=Numeric(12, 2))
    currency: str = Field(max_length=3)
    reason: str = Field(max_length=200)
    idempotency_key: str = Field(max_length=255, unique=True)
    created_at: datetime = Field(sa_type=UtcDateTime)
    #: The order that earned the credit (or whose cancellation or refund reversed it).
    order_id: str | None = Field(default=None, max_length=128)
    #: For a reversal: the credit it takes back (part of).
    reverses_id: int | None = None


LOYALTY_TABLE: Table = SQLModel.metadata.tables[LoyaltyEntry.__tablename__]


def loyalty_balance(session: Session, *, customer_id: int, currency: str) -> Decimal:
    total = session.exec(
        select(func.coalesce(func.sum(LoyaltyEntry.amount), 0)).where(
            LoyaltyEntry.customer_id == customer_id, LoyaltyEntry.currency == currency
        )
    ).one()
    return cents(total)


def earning_order(trigger: Mapping[str, Any]) -> str | None:
    """The order that earns a credit granted by a journey started by `trigger` (the
    trigger's attributes and kind, as the journey keeps them), or None."""
    order_id = trigger.get("order_id")
    if trigger.get("kind") in EARNING_KINDS and isinstance(order_id, str):
        return order_id
    return None


def unpaid_share(order: Order) -> Decimal:
    """How much of the order is no longer paid: 1 when cancelled or refunded in full,
    else the refunded part of the total."""
    if order.status != OrderStatus.PLACED:
        return Decimal(1)
    total = cents(order.total)
    if total <= 0:
        return Decimal(0)
    return min(Decimal(1), cents(order.refunded) / total)


def settle_order_credits(
    session: Session, *, order: Order, cause: str, now: datetime
) -> Decimal:
    """Reverse, under `cause` ("cancelled", "refund:<id>"), what the order's credits
    should have lost by now and have not; returns the amount reversed (positive)."""
    credits = session.exec(
        select(LoyaltyEntry).where(
            LoyaltyEntry.tenant == order.tenant, LoyaltyEntry.order_id == order.order_id,
            col(LoyaltyEntry.reverses_id).is_(None), col(LoyaltyEntry.amount) > 0,
        ).order_by(col(LoyaltyEntry.id))
    ).all()
    if not credits:
        return Decimal(0)
    already: dict[int, Decimal] = {
        int(credit_id): -cents(amount) for credit_id, amount in session.exec(
            select(LoyaltyEntry.reverses_id, func.sum(LoyaltyEntry.amount))
            .where(col(LoyaltyEntry.reverses_id).in_([credit.id for credit in credits]))
            .group_by(col(LoyaltyEntry.reverses_id))
        ).all() if credit_id is not None
    }
    share = unpaid_share(order)
    reversed_now = Decimal(0)
    for credit in credits:
        assert credit.id is not None
        owed = (cents(credit.amount) * share).quantize(CENT, ROUND_HALF_UP)
        due = min(owed, cents(credit.amount)) - already.get(credit.id, Decimal(0))
        if due <= 0:
            continue
        inserted = session.connection().execute(
            dialect_insert(session, LOYALTY_TABLE)
            .values(
                tenant=credit.tenant, customer_id=credit.customer_id, amount=-due,
                currency=credit.currency, order_id=order.order_id, reverses_id=credit.id,
                reason=f"order {order.order_id} {cause.split(':', 1)[0]}"[:200],
                idempotency_key=f"reverse:{credit.id}:{cause}"[:255], created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        if inserted.rowcount == 1:
            reversed_now += due
    return reversed_now
