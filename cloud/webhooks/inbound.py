"""What each event the shop sends does: stored once (by the shop's event id), applied
once (orders, coupons, attribution, consent, opens), and turned into the triggers
scenarios react to. The signature is checked before (`cloud.webhooks.signing`).

Orders are applied once per order id, not per event id: a shop re-sending an order
under a new event id gets it stored as an event, and nothing else (no lines, no coupon
redeemed, no conversion, no trigger; the receipt says `duplicate_order`). A cancellation
applies once per order, a refund once per refund id. Either undoes what the order did:
spend (a `spend.changed` with `before > after`), the loyalty credit it earned, its
purchases, the conversion it made; a cancellation also gives back coupons whose offer
says so. An event about an order never received is stored and does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Table
from sqlmodel import Session, SQLModel, col, select

from cloud.channels.email import NAME as EMAIL
from cloud.commerce.crud import cancel_order, find_order, record_order, refund_order, spend_in
from cloud.commerce.loyalty import settle_order_credits
from cloud.commerce.models import (
    CartEvent,
    CommerceEvent,
    CommerceEventType,
    CustomerRef,
    Ignored,
    NewsletterEvent,
    Order,
    OrderCancelled,
    OrderCreated,
    OrderRefunded,
    OrderStatus,
    PushOpened,
    WebhookEvent,
    WebhookReceipt,
)
from cloud.customers import crud
from cloud.customers.models import ConsentCreate, Customer, CustomerCreate
from cloud.db import dialect_insert
from cloud.offers.crud import redeem_coupons, reissue_coupons
from cloud.offers.models import Coupon
from cloud.tracking.attribution import ATTRIBUTION_WINDOW, attribute_order, reverse_conversions
from cloud.tracking.events import record_open_by_id
from cloud.triggers import TriggerKind, record_trigger

#: The source recorded in the consent ledger when a newsletter address is confirmed.
DOUBLE_OPT_IN_SOURCE = "newsletter-double-opt-in"

COMMERCE_TABLE: Table = SQLModel.metadata.tables[CommerceEvent.__tablename__]

#: The triggers of the events that are not about orders (those have their own keys).
WEBHOOK_KINDS: dict[CommerceEventType, TriggerKind] = {
    CommerceEventType.CART_ABANDONED: TriggerKind.CART_ABANDONED,
    CommerceEventType.NEWSLETTER_SIGNUP: TriggerKind.NEWSLETTER_SIGNUP,
    CommerceEventType.NEWSLETTER_CONFIRMED: TriggerKind.NEWSLETTER_CONFIRMED,
    CommerceEventType.APP_OPENED: TriggerKind.APP_OPENED,
}


def resolve_customer(
    session: Session, *, tenant: str, ref: CustomerRef | None, email: str | None = None,
    create: bool = False, now: datetime,
) -> Customer | None:
    """Find the customer an event is about: by the shop's id, else by email."""
    external_id = ref.external_id if ref else None
    address = (ref.email if ref else None) or email
    if external_id:
        found = session.exec(select(Customer).where(
            Customer.tenant == tenant, Customer.external_id == external_id
        )).first()
        if found is not None:
            return found
    if address:
        found = session.exec(select(Customer).where(
            Customer.tenant == tenant, Customer.email == address
        ).order_by(col(Customer.id))).first()
        if found is not None:
            return found
    if not create:
        return None
    return crud.create_customer(
        session, tenant=tenant, data=CustomerCreate(external_id=external_id, email=address),
        now=now,
    )


def handle_webhook(
    session: Session, *, tenant: str, event: WebhookEvent, now: datetime,
    attribution_window: timedelta = ATTRIBUTION_WINDOW,
) -> WebhookReceipt:
    """Store the event once (by the shop's event id) and apply its effects once.

    Raises `cloud.commerce.crud.RefundRefusedError` for a refund its order cannot take (the
    event is then not stored, so the shop may correct it and send it again)."""
    order: Order | None = None
    if isinstance(event, OrderCancelled | OrderRefunded):
        # Locked first: a cancellation and a refund of one order apply one at a time.
        order = find_order(session, tenant=tenant, order_id=event.order_id, lock=True)
    customer = _customer_of(session, tenant=tenant, event=event, order=order, now=now)
    customer_id = customer.id if customer else None
    receipt = WebhookReceipt(event_id=event.event_id, stored=True,
                             customer_id=customer.public_id if customer else None)
    savepoint = session.begin_nested() if isinstance(event, OrderRefunded) else None
    if not _store(session, tenant=tenant, event=event, customer_id=customer_id, now=now):
        if savepoint is not None:
            savepoint.commit()
        return receipt.model_copy(update={"stored": False})
    ignored: Ignored | None = None
    if isinstance(event, OrderCreated):
        ignored = _apply_order(session, tenant=tenant, event=event, customer_id=customer_id,
                               now=now, window=attribution_window)
    elif isinstance(event, OrderCancelled):
        ignored = _apply_cancellation(session, event=event, order=order, now=now)
    elif isinstance(event, OrderRefunded):
        try:
            ignored = _apply_refund(session, event=event, order=order, now=now)
        except ValueError:
            assert savepoint is not None
            savepoint.rollback()
            raise
    elif isinstance(event, NewsletterEvent) and customer is not None and (
        event.type is CommerceEventType.NEWSLETTER_CONFIRMED
    ):
        crud.record_consent(session, customer=customer, now=now, data=ConsentCreate(
            channel=EMAIL, granted=True, source=DOUBLE_OPT_IN_SOURCE,
            given_at=event.occurred_at,
        ))
    elif isinstance(event, PushOpened) and customer_id is not None:
        record_open_by_id(
            session, tenant=tenant, message_id=event.message_id, customer_id=customer_id,
            opened_at=event.occurred_at, now=now,
        )
    # What scenarios react to (cart abandoned, newsletter, app opened).
    record_webhook_triggers(session, tenant=tenant, customer_id=customer_id, event=event,
                            now=now)
    if savepoint is not None:
        savepoint.commit()
    session.flush()
    return receipt.model_copy(update={"ignored": ignored})


def _customer_of(
    session: Session, *, tenant: str, event: WebhookEvent, order: Order | None, now: datetime
) -> Customer | None:
    """Whom the event is about: the order's customer for a cancellation or a refund of
    a known order (whoever the event names), else the customer the event names."""
    if order is not None and order.customer_id is not None:
        return session.get(Customer, order.customer_id)
    email = event.email if isinstance(event, NewsletterEvent) else None
    return resolve_customer(
        session, tenant=tenant, ref=event.customer, email=email, now=now,
        create=isinstance(event, NewsletterEvent)
        and event.type is CommerceEventType.NEWSLETTER_SIGNUP,
    )


def _store(
    session: Session, *, tenant: str, event: WebhookEvent, customer_id: int | None,
    now: datetime,
) -> bool:
    """The event, once per event id; False when it was received before."""
    inserted = session.connection().execute(
        dialect_insert(session, COMMERCE_TABLE)
        .values(
            tenant=tenant, event_id=event.event_id, type=event.type.value,
            customer_id=customer_id, occurred_at=event.occurred_at, received_at=now,
            payload=event.model_dump(mode="json"),
        )
        .on_conflict_do_nothing(index_elements=["tenant", "event_id"])
        .returning(COMMERCE_TABLE.c.id)
    ).first()
    return inserted is not None


def _apply_order(
    session: Session, *, tenant: str, event: OrderCreated, customer_id: int | None,
    now: datetime, window: timedelta,
) -> Ignored | None:
    """A new order: its record and lines, its coupons, the message it converts, its
    triggers; nothing at all for an order id received before."""
    order = record_order(session, tenant=tenant, event=event, customer_id=customer_id,
                         now=now)
    if order is None:
        return Ignored.DUPLICATE_ORDER
    # The order's coupons, each redeemed once (attribution reads `redeemed`).
    redeemed = redeem_coupons(
        session, tenant=tenant, customer_id=customer_id, order_id=event.order_id,
        codes=event.coupons, items=event.items, ordered_at=event.occurred_at, now=now,
    )
    if customer_id is None:
        return None
    _record_redemptions(session, tenant=tenant, customer_id=customer_id, coupons=redeemed,
                        order_id=event.order_id, at=event.occurred_at, now=now)
    # A redeemed coupon converts the message that carried it; else the last touch.
    attribute_order(
        session, tenant=tenant, customer_id=customer_id, order_id=event.order_id,
        ordered_at=event.occurred_at,
        redeemed_coupon_ids=[coupon.id for coupon in redeemed if coupon.id is not None],
        now=now, window=window,
    )
    record_trigger(
        session, tenant=tenant, customer_id=customer_id, kind=TriggerKind.ORDER_CREATED,
        occurred_at=event.occurred_at, source_key=f"order:{event.order_id}", now=now,
        attributes={
            "categories": sorted({item.category for item in event.items}),
            "skus": sorted({item.sku for item in event.items}),
            "order_id": event.order_id, "total": str(event.total),
            "currency": event.currency, "coupons": len(redeemed),
        },
    )
    after = spend_in(session, customer_id=customer_id, currency=event.currency)
    _record_spend(session, order=order, before=after - event.total, after=after,
                  cause=f"order-spend:{event.order_id}", at=event.occurred_at, now=now)
    return None


def _apply_cancellation(
    session: Session, *, event: OrderCancelled, order: Order | None, now: datetime
) -> Ignored | None:
    """The order no longer counts: spend, loyalty credit, conversions, and coupons of
    offers that say so given back."""
    if order is None:
        return Ignored.UNKNOWN_ORDER
    before = _spend_of(session, order)
    if not cancel_order(session, order=order, at=event.occurred_at, reason=event.reason,
                        now=now):
        return Ignored.ALREADY_CANCELLED
    _reverse(session, order=order, cause="cancelled", at=event.occurred_at, now=now)
    reissue_coupons(session, tenant=order.tenant, order_id=order.order_id, now=now)
    if order.customer_id is not None:
        record_trigger(
            session, tenant=order.tenant, customer_id=order.customer_id,
            kind=TriggerKind.ORDER_CANCELLED, occurred_at=event.occurred_at,
            source_key=f"order-cancelled:{order.order_id}", now=now,
            attributes={"order_id": order.order_id, "total": str(order.total),
                        "currency": order.currency, "reason": event.reason},
        )
        _record_spend(session, order=order, before=before, after=_spend_of(session, order),
                      cause=f"cancel-spend:{order.order_id}", at=event.occurred_at, now=now)
    return None


def _apply_refund(
    session: Session, *, event: OrderRefunded, order: Order | None, now: datetime
) -> Ignored | None:
    """Spend goes down by the amount, the order's credit by its refunded share; a full
    refund also reverses the order's conversions and purchases, as a cancellation does
    (coupons stay spent: the order happened)."""
    if order is None:
        return Ignored.UNKNOWN_ORDER
    before = _spend_of(session, order)
    was_cancelled = order.status == OrderStatus.CANCELLED
    refund = refund_order(session, order=order, event=event, now=now)
    if refund is None:
        return Ignored.DUPLICATE_REFUND
    if was_cancelled:
        return Ignored.ORDER_CANCELLED
    full = order.status == OrderStatus.REFUNDED
    _reverse(session, order=order, cause=f"refund:{refund.id}", at=event.occurred_at,
             now=now, conversions=full)
    if order.customer_id is not None:
        record_trigger(
            session, tenant=order.tenant, customer_id=order.customer_id,
            kind=TriggerKind.ORDER_REFUNDED, occurred_at=event.occurred_at,
            source_key=f"order-refunded:{refund.id}", now=now,
            attributes={"order_id": order.order_id, "refund_id": event.refund_id,
                        "amount": str(event.amount), "currency": order.currency,
                        "full": full, "skus": sorted({item.sku for item in event.items})},
        )
        _record_spend(session, order=order, before=before, after=_spend_of(session, order),
                      cause=f"refund-spend:{refund.id}", at=event.occurred_at, now=now)
    return None


def _reverse(
    session: Session, *, order: Order, cause: str, at: datetime, now: datetime,
    conversions: bool = True,
) -> None:
    """Take back what the order earned, for the share of it no longer paid: loyalty
    credit, and (when nothing is left of it) the conversions it made."""
    settle_order_credits(session, order=order, cause=cause, now=now)
    if conversions:
        reverse_conversions(session, tenant=order.tenant, order_id=order.order_id, at=at)


def _spend_of(session: Session, order: Order) -> Decimal:
    if order.customer_id is None:
        return Decimal("0.00")
    return spend_in(session, customer_id=order.customer_id, currency=order.currency)


def record_webhook_triggers(
    session: Session, *, tenant: str, customer_id: int | None, event: WebhookEvent,
    now: datetime,
) -> None:
    """The trigger a newly stored shop event that is not about an order stands for
    (none for an anonymous one)."""
    kind = WEBHOOK_KINDS.get(event.type)
    if customer_id is None or kind is None:
        return
    attributes: dict[str, object] = {}
    if isinstance(event, CartEvent):
        attributes["categories"] = sorted({item.category for item in event.items})
        attributes["skus"] = sorted({item.sku for item in event.items})
        attributes["cart_id"] = event.cart_id
    record_trigger(
        session, tenant=tenant, customer_id=customer_id, kind=kind,
        occurred_at=event.occurred_at, source_key=f"webhook:{event.event_id}", now=now,
        attributes=attributes,
    )


def _record_redemptions(
    session: Session, *, tenant: str, customer_id: int, coupons: Sequence[Coupon],
    order_id: str, at: datetime, now: datetime,
) -> None:
    """A coupon.redeemed trigger per coupon the order used (a thank-you, a next offer);
    keyed by order too, as a coupon given back by a cancelled order may be used again."""
    for coupon in coupons:
        record_trigger(
            session, tenant=tenant, customer_id=customer_id, kind=TriggerKind.COUPON_REDEEMED,
            occurred_at=at, source_key=f"coupon:{coupon.id}:{order_id}", now=now,
            attributes={"order_id": order_id, "offer_id": coupon.offer_id},
        )


def _record_spend(
    session: Session, *, order: Order, before: Decimal, after: Decimal, cause: str,
    at: datetime, now: datetime,
) -> None:
    """Lifetime spend in the order's currency before and after what happened to the
    order, for "spend crosses X" scenarios; nothing when it did not change (a refund of
    nothing, a cancellation of an order refunded in full)."""
    if order.customer_id is None or before == after:
        return
    record_trigger(
        session, tenant=order.tenant, customer_id=order.customer_id,
        kind=TriggerKind.SPEND_CHANGED, occurred_at=at, source_key=cause, now=now,
        attributes={"before": str(before), "after": str(after), "currency": order.currency,
                    "order_id": order.order_id},
    )
