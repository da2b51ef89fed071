from datetime import timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, text
from sqlmodel import select

from cloud.api import create_app
from cloud.commerce.models import CommerceEventType, CustomerRef, LineItem, OrderCreated
from cloud.customers import crud
from cloud.customers.models import (
    ConsentCreate,
    CustomerCreate,
    ErasureRecord,
    FcmRegistration,
    WifiMacRegistration,
)
from cloud.db import session_scope
from cloud.messages.queue import enqueue
from cloud.places.models import RecentFix
from cloud.places.recent import keep_recent_fixes
from cloud.places.tracker import LocationReport
from cloud.presence.crud import insert_events
from cloud.presence.models import PresenceEventRow
from cloud.webhooks.inbound import handle_webhook
from cloud.webhooks.outbound import queue_webhook
from tests.cloud.delivery.queue_helpers import outgoing
from tests.cloud.factories import (
    MAC_OF,
    PSEUDONYMIZER,
    START,
    bearer,
    cloud_settings,
    issue_key,
    make_event,
    wifi_pseudonym,
)

TABLES = ("customer", "consent", "device", "identity_link", "message", "commerce_event",
          "order_line", "commerce_order", "outbound_webhook")


def seed(engine: Engine, tenant: str, name: str) -> int:
    with session_scope(engine) as session:
        customer = crud.create_customer(
            session, tenant=tenant, now=START,
            data=CustomerCreate(external_id=f"shop-{name}", email=f"{name}@example.com"),
        )
        assert customer.id is not None
        crud.record_consent(session, customer=customer, now=START, data=ConsentCreate(
            channel="push", granted=True, source="app"))
        crud.record_consent(session, customer=customer, now=START, data=ConsentCreate(
            channel="location_marketing", granted=True, source="app"))
        assert keep_recent_fixes(session, tenant=tenant, customer_id=customer.id, now=START,
                                 reports=[LocationReport(tenant, str(customer.id), 40.4168,
                                                         -3.7038, 8.0, START)]) == 1
        crud.register_device(
            session, customer=customer, pseudonymizers=[PSEUDONYMIZER], now=START,
            registration=FcmRegistration(kind="fcm", token=f"fcm-token-{name}-0123456789"))
        crud.register_device(
            session, customer=customer, pseudonymizers=[PSEUDONYMIZER], now=START,
            registration=WifiMacRegistration(kind="wifi_mac", mac=MAC_OF[name]))
        enqueue(session, now=START, outgoing=outgoing(tenant, customer.id, f"k-{name}"))
        queue_webhook(
            session, tenant=tenant, customer_id=customer.id, journey_id=customer.id,
            step="hook", url=f"https://shop.example/hooks/{name}",
            body={"customer_id": customer.id}, now=START,
        )
        handle_webhook(session, tenant=tenant, now=START, event=OrderCreated(
            type=CommerceEventType.ORDER_CREATED, event_id=f"evt-{name}",
            occurred_at=START, customer=CustomerRef(external_id=f"shop-{name}"),
            order_id=f"o-{name}", currency="EUR", total=Decimal("599.00"),
            items=[LineItem(sku="WM-8KG", name="Washer", category="washers", quantity=1,
                            unit_price=Decimal("599.00"))],
        ))
        insert_events(session, received_at=START, events=[
            make_event(tenant=tenant, pseudonym=wifi_pseudonym(MAC_OF[name]),
                       first_seen=START + timedelta(days=day), sequence=day)
            for day in range(3)
        ])
        session.commit()
        return customer.id


def test_erasure_removes_everything_personal_and_keeps_the_counts(
    engine: Engine, migrated_url: str, tenant: str
) -> None:
    juan, ana = seed(engine, tenant, "juan"), seed(engine, tenant, "ana")
    settings = cloud_settings(tenant=tenant, database_url=migrated_url)
    admin = bearer(issue_key(engine, tenant=tenant))
    with TestClient(create_app(settings, engine=engine), headers=admin) as client:
        base = f"/tenants/{tenant}/customers/{juan}"
        erased = client.delete(base)
        assert erased.status_code == 200, erased.text
        assert client.get(base).status_code == 404
        assert client.delete(base).status_code == 404
    counts = erased.json()["counts"]
    assert counts == {
        "presence_events_unlinked": 3, "journey_log": 0, "outbound_webhooks": 1,
        "journeys": 0, "tags": 0,
        "loyalty_entries": 0, "triggers": 2, "messages": 1, "coupons": 0, "order_lines": 1,
        "order_refunds": 0, "orders": 1, "commerce_events": 1, "identity_links": 1,
        "devices": 2, "consents": 2,
        "geofence_stays": 0, "recent_location_fixes": 1,
    }
    with session_scope(engine) as session:
        connection = session.connection()
        dump = " ".join(
            str(row) for table in TABLES
            for row in connection.execute(text(f"SELECT * FROM {table}"))
        )
        assert "juan" not in dump
        assert "ana@example.com" in dump  # the other customer is untouched
        pseudonyms = session.exec(select(PresenceEventRow.pseudonym)).all()
        assert wifi_pseudonym(MAC_OF["juan"]) not in pseudonyms
        assert pseudonyms.count(wifi_pseudonym(MAC_OF["ana"])) == 3
        # footfall keeps counting Juan's three visits, each day under its own stand-in
        assert session.exec(select(func.count()).select_from(PresenceEventRow)).one() == 6
        assert len(set(pseudonyms)) == 4
        # the location fix kept for the map goes with Juan; Ana's stays
        assert session.exec(select(RecentFix.customer_id)).all() == [ana]
        [record] = session.exec(select(ErasureRecord)).all()
        assert record.tenant == tenant
        assert "juan" not in str(record.counts)
    assert ana != juan
