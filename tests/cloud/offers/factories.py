"""Builders for offers, customers and orders as the shop would send them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from cloud.commerce.models import CommerceEventType, CustomerRef, LineItem, OrderCreated
from cloud.customers import crud as customers
from cloud.customers.models import CustomerCreate
from cloud.metrics import REGISTRY
from cloud.offers import crud
from cloud.offers.models import Offer, OfferCreate
from cloud.webhooks.inbound import handle_webhook

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

WASHER = LineItem(sku="WM-8KG", name="Washing machine 8 kg", category="washers", quantity=1,
                  unit_price=Decimal("599.00"))
DRYER = LineItem(sku="DR-9KG", name="Heat-pump dryer 9 kg", category="dryers", quantity=1,
                 unit_price=Decimal("699.00"))


def offer_body(**changes: Any) -> dict[str, Any]:
    """A valid offer body (JSON-like): 20% off the dryers category."""
    body: dict[str, Any] = {
        "name": "Dryers 20%", "discount_percent": 20, "category": "dryers",
        "product_name": "Heat-pump dryer 9 kg", "product_url": "https://shop.example/dryers",
        "image_url": "https://cdn.shop.example/dr-9kg.jpg", "price": "699.00",
        "currency": "EUR", "valid_from": "2026-11-01T00:00:00Z",
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


def save_offer(session: Session, *, tenant: str, key: str, **changes: Any) -> Offer:
    offer, _created = crud.upsert_offer(
        session, tenant=tenant, key=key, data=OfferCreate.model_validate(offer_body(**changes)),
        now=NOW,
    )
    return offer


def new_customer(session: Session, *, tenant: str, name: str) -> int:
    customer = customers.create_customer(
        session, tenant=tenant, now=NOW, data=CustomerCreate(external_id=f"shop-{name}")
    )
    assert customer.id is not None
    return customer.id


def order_event(
    *, name: str, order_id: str, items: list[LineItem], coupons: list[str] | None = None,
    event_id: str | None = None, at: datetime = NOW,
) -> OrderCreated:
    return OrderCreated(
        type=CommerceEventType.ORDER_CREATED, event_id=event_id or f"evt-{order_id}",
        occurred_at=at, customer=CustomerRef(external_id=f"shop-{name}"), order_id=order_id,
        currency="EUR", total=sum((item.unit_price for item in items), Decimal("0")),
        items=items, coupons=coupons or [],
    )


def place_order(session: Session, *, tenant: str, event: OrderCreated) -> None:
    handle_webhook(session, tenant=tenant, event=event, now=NOW)


def refused(reason: str) -> float:
    value = REGISTRY.get_sample_value("vitrina_coupon_codes_refused_total", {"reason": reason})
    return value or 0.0


def coupons_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("vitrina_coupons_total", {"outcome": outcome}) or 0.0
