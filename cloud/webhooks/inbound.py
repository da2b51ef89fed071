"""What each event the shop sends does: stored once (by the shop's event id), applied
once (order lines, coupons, attribution, consent, opens), and turned into the triggers
scenarios react to. The signature is checked before (`cloud.webhooks.signing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Table
from sqlmodel import Session, SQLModel, col, select

from cloud.channels.email import NAME as EMAIL
from cloud.commerce.crud import lifetime_spend, record_order
from cloud.commerce.models import (
    CartEvent,
    CommerceEvent,
    CommerceEventType,
    CustomerRef,
    NewsletterEvent,
    OrderCreated,
    PushOpened,
    WebhookEvent,
    WebhookReceipt,
)
from cloud.customers import crud
from cloud.customers.models import ConsentCreate, Customer, CustomerCreate
from cloud.db import dialect_insert
from cloud.offers.crud import redeem_coupons
from cloud.offers.models import Coupon
from cloud.tracking.attribution import ATTRIBUTION_WINDOW, attribute_order
from cloud.tracking.events import record_open_by_id
from cloud.triggers import TriggerKind, record_trigger

#: The source recorded in the consent ledger when a newsletter address is confirmed.
DOUBLE_OPT_IN_SOURCE = "newsletter-double-opt-in"

COMMERCE_TABLE: Table = SQLModel.metadata.tables[CommerceEvent.__tablename__]

WEBHOOK_KINDS: dict[CommerceEventType, TriggerKind] = {
    CommerceEventType.CART_ABANDONED: TriggerKind.CART_ABANDONED,
    CommerceEventType.ORDER_CREATED: TriggerKind.ORDER_CREATED,
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
    """Store the event once (by the shop's event id) and apply its effects once."""
    email = event.email if isinstance(event, NewsletterEvent) else None
    customer = resolve_customer(
        session, tenant=tenant, ref=event.customer, email=email, now=now,
        create=isinstance(event, NewsletterEvent)
        and event.type is CommerceEventType.NEWSLETTER_SIGNUP,
    )
    customer_id = customer.id if customer else None
    public_id = customer.public_id if customer else None
    redeemed: list[Coupon] = []
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
    if inserted is None:
        return WebhookReceipt(event_id=event.event_id, stored=False, customer_id=public_id)
    if isinstance(event, OrderCreated):
        record_order(session, tenant=tenant, event=event, customer_id=customer_id)
        # The order's coupons, each redeemed once (attribution reads `redeemed`).
        redeemed = redeem_coupons(
            session, tenant=tenant, customer_id=customer_id, order_id=event.order_id,
            codes=event.coupons, items=event.items, ordered_at=event.occurred_at, now=now,
        )
        if customer_id is not None:
            _record_redemptions(session, tenant=tenant, customer_id=customer_id,
                                coupons=redeemed, order_id=event.order_id,
                                at=event.occurred_at, now=now)
            # A redeemed coupon converts the message that carried it; else the last touch.
            attribute_order(
                session, tenant=tenant, customer_id=customer_id, order_id=event.order_id,
                ordered_at=event.occurred_at,
                redeemed_coupon_ids=[coupon.id for coupon in redeemed if coupon.id is not None],
                now=now, window=attribution_window,
            )
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
    # What scenarios react to (cart abandoned, order and spend, newsletter, app opened).
    record_webhook_triggers(
        session, tenant=tenant, customer_id=customer_id, event=event, now=now,
        redeemed_coupons=len(redeemed),
    )
    session.flush()
    return WebhookReceipt(event_id=event.event_id, stored=True, customer_id=public_id)


def record_webhook_triggers(
    session: Session, *, tenant: str, customer_id: int | None, event: WebhookEvent,
    now: datetime, redeemed_coupons: int = 0,
) -> None:
    """The triggers a newly stored shop event stands for (none for an anonymous one)."""
    kind = WEBHOOK_KINDS.get(event.type)
    if customer_id is None or kind is None:
        return
    attributes: dict[str, object] = {}
    if isinstance(event, CartEvent | OrderCreated):
        attributes["categories"] = sorted({item.category for item in event.items})
        attributes["skus"] = sorted({item.sku for item in event.items})
    if isinstance(event, CartEvent):
        attributes["cart_id"] = event.cart_id
    if isinstance(event, OrderCreated):
        attributes.update(order_id=event.order_id, total=str(event.total),
                          currency=event.currency, coupons=redeemed_coupons)
    record_trigger(
        session, tenant=tenant, customer_id=customer_id, kind=kind,
        occurred_at=event.occurred_at, source_key=f"webhook:{event.event_id}", now=now,
        attributes=attributes,
    )
    if isinstance(event, OrderCreated):
        _record_spend(session, tenant=tenant, customer_id=customer_id, event=event, now=now)


def _record_redemptions(
    session: Session, *, tenant: str, customer_id: int, coupons: Sequence[Coupon],
    order_id: str, at: datetime, now: datetime,
) -> None:
    """A coupon.redeemed trigger per coupon the order used (a thank-you, a next offer)."""
    for coupon in coupons:
        record_trigger(
            session, tenant=tenant, customer_id=customer_id, kind=TriggerKind.COUPON_REDEEMED,
            occurred_at=at, source_key=f"coupon:{coupon.id}", now=now,
            attributes={"order_id": order_id, "offer_id": coupon.offer_id},
        )


def _record_spend(
    session: Session, *, tenant: str, customer_id: int, event: OrderCreated, now: datetime
) -> None:
    """Lifetime spend before and after this order, for "spend crosses X" scenarios."""
    after = lifetime_spend(session, [customer_id]).get(customer_id, Decimal(0))
    order = sum((item.unit_price * item.quantity for item in event.items), Decimal(0))
    record_trigger(
        session, tenant=tenant, customer_id=customer_id, kind=TriggerKind.SPEND_CHANGED,
        occurred_at=event.occurred_at, source_key=f"spend:{event.event_id}", now=now,
        attributes={"before": str(after - order), "after": str(after),
                    "currency": event.currency},
    )
