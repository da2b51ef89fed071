"""Signed webhooks from the shop: verification and what each event does.

Signature: `X-Vitrina-Timestamp: <unix seconds>` and
`X-Vitrina-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>`. The
timestamp is part of what is signed and must be recent, so a captured request cannot be
replayed later; several secrets may be valid at once, so they can be rotated.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Table
from sqlmodel import Session, SQLModel, col, select

from cloud.commerce.models import (
    CommerceEvent,
    CommerceEventType,
    CustomerRef,
    NewsletterEvent,
    OrderCreated,
    OrderLine,
    PushOpened,
    WebhookEvent,
    WebhookReceipt,
)
from cloud.customers import crud
from cloud.customers.models import ConsentChannel, ConsentCreate, Customer, CustomerCreate
from cloud.db import dialect_insert
from cloud.offers.crud import redeem_coupons
from cloud.offers.models import Coupon
from cloud.scenarios.sources import record_webhook_triggers
from cloud.tracking.attribution import ATTRIBUTION_WINDOW, attribute_order
from cloud.tracking.events import record_open_by_id

SIGNATURE_HEADER = "X-Vitrina-Signature"
TIMESTAMP_HEADER = "X-Vitrina-Timestamp"
SIGNATURE_VERSION = "v1"
#: Clocks drift and deliveries queue; older than this, a signed request is a replay.
MAX_SIGNATURE_AGE_S = 300
#: The source recorded in the consent ledger when a newsletter address is confirmed.
DOUBLE_OPT_IN_SOURCE = "newsletter-double-opt-in"

COMMERCE_TABLE: Table = SQLModel.metadata.tables[CommerceEvent.__tablename__]
ORDER_LINE_TABLE: Table = SQLModel.metadata.tables[OrderLine.__tablename__]


class SignatureError(ValueError):
    """The request is not signed by the shop (or too old); the message says which."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify_signature(
    *, secrets: Sequence[str], timestamp: str | None, signature: str | None, body: bytes,
    now: datetime,
) -> None:
    if not secrets:
        raise SignatureError("webhooks are not configured for this tenant (no secret)")
    if not timestamp or not signature:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds") from None
    if abs(now.timestamp() - sent) > MAX_SIGNATURE_AGE_S:
        raise SignatureError(f"signature timestamp is more than {MAX_SIGNATURE_AGE_S}s off")
    offered = [part.strip() for part in signature.split(",")]
    for secret in secrets:
        expected = sign(secret, sent, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise SignatureError("signature does not match")


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
        return WebhookReceipt(event_id=event.event_id, stored=False, customer_id=customer_id)
    if isinstance(event, OrderCreated):
        _record_order(session, tenant=tenant, event=event, customer_id=customer_id)
        # The order's coupons, each redeemed once (attribution reads `redeemed`).
        redeemed = redeem_coupons(
            session, tenant=tenant, customer_id=customer_id, order_id=event.order_id,
            codes=event.coupons, items=event.items, ordered_at=event.occurred_at, now=now,
        )
        if customer_id is not None:
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
            channel=ConsentChannel.EMAIL, granted=True, source=DOUBLE_OPT_IN_SOURCE,
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
    return WebhookReceipt(event_id=event.event_id, stored=True, customer_id=customer_id)


def _record_order(
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
