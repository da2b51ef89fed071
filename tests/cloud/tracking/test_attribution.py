"""Which message an order converts, on SQLite and PostgreSQL: the coupon's carrier
directly, else the last touch within the attribution window, once per message; and the
same from a signed order webhook, with the window from the settings."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlmodel import col, select

from cloud.api import create_app
from cloud.customers.models import Customer
from cloud.db import session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.tracking.attribution import attribute_order
from cloud.triggers import Trigger, TriggerKind
from cloud.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.cloud.delivery.queue_helpers import NOW, message, new_customer, outgoing, queue
from tests.cloud.factories import cloud_settings

WEBHOOK_SECRET = "whsec-attribution-0123"


def sent(engine: Engine, message_id: int | None, at: datetime, **values: Any) -> int:
    assert message_id is not None
    with session_scope(engine) as session:
        session.execute(
            update(Message).where(col(Message.id) == message_id)
            .values(status=MessageStatus.SENT.value, sent_at=at, **values)
        )
        session.commit()
    return message_id


def attribute(engine: Engine, tenant: str, customer: int, order: str, at: datetime,
              coupons: list[int]) -> list[int]:
    with session_scope(engine) as session:
        converted = attribute_order(
            session, tenant=tenant, customer_id=customer, order_id=order, ordered_at=at,
            redeemed_coupon_ids=coupons, now=at,
        )
        session.commit()
    return converted


def conversions(engine: Engine, customer: int) -> list[tuple[int, str]]:
    with session_scope(engine) as session:
        rows = session.exec(select(Trigger).where(
            Trigger.customer_id == customer, Trigger.kind == TriggerKind.MESSAGE_CONVERTED,
        ).order_by(col(Trigger.id))).all()
    return [(row.attributes["message_id"], row.attributes["via"]) for row in rows]


def test_coupon_first_then_last_touch_within_the_window_each_message_once(
    engine: Engine, tenant: str
) -> None:
    customer = new_customer(engine, tenant)
    coupon_mail, opened_push, old_push, unsent = queue(
        engine,
        outgoing(tenant, customer, "coupon", channel="email", coupon_id=11),
        outgoing(tenant, customer, "opened"),
        outgoing(tenant, customer, "old"),
        outgoing(tenant, customer, "unsent"),
        now=NOW - timedelta(days=10),
    )
    coupon_mail = sent(engine, coupon_mail, NOW - timedelta(days=3))
    opened_push = sent(engine, opened_push, NOW - timedelta(days=2),
                       opened_at=NOW - timedelta(days=1))
    old_push = sent(engine, old_push, NOW - timedelta(days=10),
                    clicked_at=NOW - timedelta(days=8))

    # The redeemed coupon names its message, however recent other touches are.
    assert attribute(engine, tenant, customer, "o-1", NOW, [11]) == [coupon_mail]
    row = message(engine, coupon_mail)
    assert (row.converted_at, row.conversion_order_id) == (NOW, "o-1")
    # No coupon: the last touch (the push opened yesterday) converts...
    later = NOW + timedelta(hours=1)
    assert attribute(engine, tenant, customer, "o-2", later, []) == [opened_push]
    # ...once: the next order finds it converted and credits nothing else.
    assert attribute(engine, tenant, customer, "o-3", later + timedelta(hours=1), []) == []
    assert message(engine, old_push).converted_at is None
    # Outside the 7-day window nothing converts: a click 8 days before the order is old.
    lapsed = new_customer(engine, tenant)
    [forgotten] = queue(engine, outgoing(tenant, lapsed, "forgotten"),
                        now=NOW - timedelta(days=10))
    sent(engine, forgotten, NOW - timedelta(days=10), clicked_at=NOW - timedelta(days=8))
    assert attribute(engine, tenant, lapsed, "o-9", NOW, []) == []
    assert message(engine, unsent or 0).converted_at is None
    assert conversions(engine, customer) == [(coupon_mail, "coupon"), (opened_push, "last_touch")]


def test_a_consent_request_is_never_credited_with_an_order(engine: Engine, tenant: str) -> None:
    customer = new_customer(engine, tenant)
    push, confirm = queue(
        engine, outgoing(tenant, customer, "push"),
        outgoing(tenant, customer, "doi", channel="email", transactional=True),
        now=NOW - timedelta(days=3),
    )
    push = sent(engine, push, NOW - timedelta(days=2))
    # Clicking "confirm your subscription" an hour ago is the later touch, but not marketing.
    confirm = sent(engine, confirm, NOW - timedelta(days=1), clicked_at=NOW - timedelta(hours=1))
    assert attribute(engine, tenant, customer, "o-1", NOW, []) == [push]
    assert message(engine, confirm).converted_at is None


def test_an_order_webhook_converts_the_last_touch_within_the_configured_window(
    engine: Engine, migrated_url: str, tenant: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url,
                              webhook_secrets=[WEBHOOK_SECRET],
                              tracking={"attribution_window_days": 1})
    customer = new_customer(engine, tenant)
    with session_scope(engine) as session:
        profile = session.get(Customer, customer)
        assert profile is not None
        profile.external_id = "shop-42"
        session.add(profile)
        session.commit()
    stale, recent = queue(engine, outgoing(tenant, customer, "two-days"),
                          outgoing(tenant, customer, "an-hour"), now=NOW - timedelta(days=3))
    stale = sent(engine, stale, NOW - timedelta(days=2))

    def order(client: TestClient, number: int, at: datetime) -> None:
        body = json.dumps({
            "type": "order.created", "event_id": f"ord-{number}", "order_id": f"o-{number}",
            "occurred_at": at.isoformat(), "customer": {"external_id": "shop-42"},
            "currency": "EUR", "total": "499.00",
            "items": [{"sku": "DRY-8", "name": "Dryer", "category": "dryers", "quantity": 1,
                       "unit_price": "499.00"}],
        }).encode()
        stamp = int(NOW.timestamp())
        response = client.post(f"/webhooks/{tenant}", content=body, headers={
            TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(WEBHOOK_SECRET, stamp, body),
            "content-type": "application/json",
        })
        assert response.status_code == 202, response.text

    with TestClient(create_app(settings, engine=engine, now=lambda: NOW)) as client:
        order(client, 1, NOW)  # two days after the only send: outside a 1-day window
        assert message(engine, stale).converted_at is None
        recent = sent(engine, recent, NOW - timedelta(hours=1))
        order(client, 2, NOW)
        order(client, 2, NOW)  # the shop retries the same event: nothing more

    row = message(engine, recent)
    assert (row.converted_at, row.conversion_order_id) == (NOW, "o-2")
    assert conversions(engine, customer) == [(recent, "last_touch")]
