"""Turning what happens elsewhere into triggers: shop webhooks, presence from gateways,
sign-ups and device registrations. Each function runs in its cause's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from cloud.commerce.models import (
    CartEvent,
    CommerceEventType,
    OrderCreated,
    WebhookEvent,
)
from cloud.customers.crud import customers_for_pseudonyms
from cloud.customers.models import DeviceKind
from cloud.scenarios.facts import lifetime_spend
from cloud.scenarios.triggers import TriggerKind, record_trigger, record_triggers, trigger_row
from shared.presence import PresenceEvent, PseudonymScope, Transition

WEBHOOK_KINDS: dict[CommerceEventType, TriggerKind] = {
    CommerceEventType.CART_ABANDONED: TriggerKind.CART_ABANDONED,
    CommerceEventType.ORDER_CREATED: TriggerKind.ORDER_CREATED,
    CommerceEventType.NEWSLETTER_SIGNUP: TriggerKind.NEWSLETTER_SIGNUP,
    CommerceEventType.NEWSLETTER_CONFIRMED: TriggerKind.NEWSLETTER_CONFIRMED,
    CommerceEventType.APP_OPENED: TriggerKind.APP_OPENED,
}
PRESENCE_KINDS: dict[Transition, TriggerKind] = {
    Transition.ENTER: TriggerKind.PRESENCE_ENTER,
    Transition.DWELL: TriggerKind.PRESENCE_DWELL,
    Transition.EXIT: TriggerKind.PRESENCE_EXIT,
}
SUBSCRIPTION_KINDS: dict[DeviceKind, TriggerKind] = {
    DeviceKind.FCM: TriggerKind.PUSH_SUBSCRIBED,
    DeviceKind.WEB_PUSH: TriggerKind.WEB_PUSH_SUBSCRIBED,
}


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


def record_presence_triggers(
    session: Session, *, events: Sequence[PresenceEvent], now: datetime
) -> int:
    """A trigger per presence transition of a device linked to a customer; returns how
    many. Daily (unlinkable) pseudonyms never belong to a customer and are skipped."""
    stable = [event for event in events if event.scope is PseudonymScope.STABLE]
    rows: list[dict[str, Any]] = []
    for tenant in sorted({event.tenant for event in stable}):
        of_tenant = [event for event in stable if event.tenant == tenant]
        owners = customers_for_pseudonyms(
            session, tenant=tenant, pseudonyms=[event.pseudonym for event in of_tenant]
        )
        for event in of_tenant:
            customer_id = owners.get(event.pseudonym)
            if customer_id is None:
                continue
            when = event.first_seen if event.transition is Transition.ENTER else event.last_seen
            rows.append(trigger_row(
                tenant=tenant, customer_id=customer_id, kind=PRESENCE_KINDS[event.transition],
                occurred_at=when, source_key=f"presence:{event.event_id}", now=now,
                attributes={"store": event.store, "zone": event.zone,
                            "gateway": event.gateway, "dwell_s": event.dwell_s},
            ))
    return record_triggers(session, rows)


def record_signup(session: Session, *, tenant: str, customer_id: int, now: datetime) -> None:
    record_trigger(
        session, tenant=tenant, customer_id=customer_id, kind=TriggerKind.CUSTOMER_SIGNUP,
        occurred_at=now, source_key=f"signup:{customer_id}", now=now,
    )


def record_subscription(
    session: Session, *, tenant: str, customer_id: int, device_id: int, kind: DeviceKind,
    now: datetime,
) -> None:
    """A new (or renewed) push or web push subscription: "accepts web push" scenarios."""
    trigger_kind = SUBSCRIPTION_KINDS.get(kind)
    if trigger_kind is not None:
        record_trigger(
            session, tenant=tenant, customer_id=customer_id, kind=trigger_kind,
            occurred_at=now, source_key=f"subscribed:{device_id}:{now.isoformat()}", now=now,
            attributes={"device_id": device_id},
        )
