"""A recorded history to run dry runs over: a store in Madrid, customers with and without
consent, an offer with coupons, a month of washer orders, then three days of visits and
orders; and the cross-sell scenario the tests run over it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from cloud.commerce.models import LineItem, OrderCreated
from cloud.customers.crud import create_customer, record_consent
from cloud.customers.models import ConsentCreate, CustomerCreate
from cloud.offers.crud import upsert_offer
from cloud.offers.models import OfferCreate
from cloud.places.crud import put_store
from cloud.places.models import StoreCreate
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.settings import ScenarioSettings
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec
from cloud.triggers import TriggerKind, record_trigger
from cloud.webhooks.inbound import handle_webhook

START = datetime(2026, 5, 4, 0, 0, tzinfo=UTC)
END = START + timedelta(days=3)
SPEC_DOCUMENT: dict[str, Any] = {
    "key": "visit-dryer", "name": "Dryer for washer buyers in the store",
    "entry": {"event": "presence.enter", "cooldown": "P1D"},
    "conditions": {"purchased": {"category": "washers", "within": "P30D"}},
    "holdout_percent": 20, "variants": [{"key": "a"}, {"key": "b"}],
    "caps": [{"max": 2, "per": "P7D"}],
    "steps": [
        {"id": "offer", "type": "send", "channels": ["email"], "template": "dryer",
         "offer": {"key": "dryer-20"}, "coupon": {"valid_for": "PT24H"},
         "expires_after": "PT12H"},
        {"id": "bought", "type": "wait_for", "event": "order.created", "timeout": "PT3H",
         "yes": "thanks", "no": "end"},
        {"id": "thanks", "type": "loyalty_credit", "amount": "5.00", "currency": "EUR"},
    ],
}
SPEC = ScenarioSpec.model_validate(SPEC_DOCUMENT)
#: How the tests and the benchmark run the engine: default settings, links nowhere.
CONFIG = EngineConfig(settings=ScenarioSettings(),
                      links=Links(base_url="https://t.example", secret="s" * 32))


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    apply: Callable[[Session, datetime], None]


def _visit(tenant: str, customer_id: int, number: int) -> Callable[[Session, datetime], None]:
    def apply(session: Session, now: datetime) -> None:
        record_trigger(session, tenant=tenant, customer_id=customer_id,
                       kind=TriggerKind.PRESENCE_ENTER, occurred_at=now,
                       source_key=f"presence:{customer_id}:{number}", now=now,
                       attributes={"store": "madrid", "zone": "entrance", "gateway": "g1",
                                   "dwell_s": 0})
    return apply


def _order(
    tenant: str, external_id: str, number: int, category: str
) -> Callable[[Session, datetime], None]:
    def apply(session: Session, now: datetime) -> None:
        handle_webhook(session, tenant=tenant, now=now, event=OrderCreated.model_validate({
            "type": "order.created", "event_id": f"evt-{external_id}-{number}",
            "occurred_at": now, "customer": {"external_id": external_id},
            "order_id": f"o-{external_id}-{number}", "currency": "EUR", "total": "499.00",
            "items": [LineItem(sku=f"{category}-1", name="Appliance", category=category,
                               quantity=1, unit_price=Decimal("499.00")).model_dump()],
        }))
    return apply


def seed(session: Session, tenant: str, start: datetime = START) -> list[Event]:
    """A store in Madrid, 40 customers (most with email consent, a few without), an offer
    with a coupon, and three days of visits and orders at random times of day (some in
    quiet hours), after a month of washer orders."""
    put_store(session, tenant=tenant, key="madrid", now=start - timedelta(days=40),
                 data=StoreCreate(name="Madrid Centro", time_zone="Europe/Madrid"))
    save_template(session, tenant=tenant, key="dryer", now=start - timedelta(days=40),
                  spec=TemplateSpec.model_validate({
                      "channel": "email", "locale": "en-GB",
                      "parts": {"subject": "A dryer for you",
                                "html": "<p>{{ coupon.code }}</p>{{ unsubscribe_url }}",
                                "text": "{{ coupon.code }} {{ unsubscribe_url }}"}}))
    upsert_offer(session, tenant=tenant, key="dryer-20", now=start - timedelta(days=40),
                 data=OfferCreate.model_validate({
                     "name": "Dryers 20% off", "discount_percent": 20, "category": "dryers",
                     "product_name": "Dryer", "product_url": "https://shop.example/d",
                     "image_url": "https://shop.example/d.jpg", "price": "549.00",
                     "currency": "EUR", "valid_from": "2026-01-01T00:00:00Z",
                     "coupon_limit": 1000}))
    rng = random.Random(7)
    events: list[Event] = []
    for number in range(40):
        joined = start - timedelta(days=60)
        row = create_customer(session, tenant=tenant, now=joined, data=CustomerCreate(
            external_id=f"c{number}", email=f"c{number}@example.com",
            time_zone="Europe/Madrid" if number % 3 else None))
        assert row.id is not None
        for channel in ("email", "location_marketing") if number % 7 else ("location_marketing",):
            record_consent(session, customer=row, now=joined, data=ConsentCreate(
                channel=channel, granted=True, source="app", given_at=joined))
        if number % 4:
            moment = start - timedelta(days=rng.randint(1, 20), minutes=rng.randint(0, 900))
            events.append(Event(moment, _order(tenant, f"c{number}", 0, "washers")))
        for visit in range(rng.randint(1, 4)):
            moment = start + timedelta(minutes=rng.randint(0, 3 * 24 * 60 - 1),
                                       seconds=rng.randint(0, 59))
            events.append(Event(moment, _visit(tenant, row.id, visit)))
            if rng.random() < 0.4:
                after = moment + timedelta(minutes=rng.randint(5, 300))
                events.append(Event(after, _order(tenant, f"c{number}", visit + 1, "dryers")))
    session.commit()
    return sorted(events, key=lambda event: event.at)
