"""The acceptance journey: Juan, from newsletter signup to his birthday, on a controllable
clock against PostgreSQL, with the demo shop's own configuration loaded through the API.

Triggers come in as they would in production (signed shop webhooks, device registrations
and push opens over the API, presence batches published through a real broker to the
ingest consumer); the scenario worker and the delivery worker are driven round by round
as the clock advances. Every message is checked (channel, due time, offer, coupon) and so
is every message that must not exist (quiet hours, consent, offers for things bought).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import col, select

from cloud.api import create_app
from cloud.auth.models import Role
from cloud.channels import DeploymentSender
from cloud.channels.fcm import FcmSender, FcmSettings
from cloud.db import make_engine, migrate, session_scope
from cloud.delivery.worker import DeliveryWorker, delivery_worker
from cloud.ingest.consumer import PresenceConsumer
from cloud.messages.models import Message
from cloud.offers.models import Coupon, Offer
from cloud.scenarios.worker import ScenarioWorker
from cloud.service import engine_config
from cloud.settings import Settings
from cloud.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from demo.shop_config import load_shop
from provisioning.local_broker import LocalBroker
from sandbox.fcm import FcmSandbox, ServiceAccount
from sandbox.sms import SmsSandbox
from sandbox.smtp import SmtpSandbox
from sandbox.webpush import BrowserSubscription, WebPushSandbox
from shared.presence import Transition
from tests.cloud.factories import (
    app_pseudonym,
    batch_payload,
    bearer,
    cloud_settings,
    customer_number,
    issue_key,
    make_event,
    presence_topic,
    register_shop_backend,
)
from tests.cloud.running import WAIT_S, publish_all, publisher, wait_for
from tests.support.postgres import fresh_database
from tests.support.shop_backend import ShopBackend

SECRET = "whsec-journey-0123456789"
STORE = "madrid-centro"
JUAN_APP, ANA_APP = "juan-install-0001", "ana-install-0002"
JUAN_FCM = "juan-phone-0001:APA91bJuanJuanJuanJuanJuanJuan"
ANA_FCM = "ana-phone-00002:APA91bAnaAnaAnaAnaAnaAnaAnaAna"
FCM_PROJECT = "vitrina-journey"
#: Where tracked links and unsubscribe pages point: https, as email one-click requires.
PUBLIC_URL = "https://t.shop.example"
#: Monday 2 March 2026, 11:00 in Madrid (CET, UTC+1).
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Shop:
    """The running system: API, scenario worker, delivery worker, one clock."""

    client: TestClient
    engine: Engine
    tenant: str
    clock: Clock
    scenarios: ScenarioWorker
    delivery: DeliveryWorker
    smtp: SmtpSandbox
    sms: SmsSandbox
    web_push: WebPushSandbox
    ingest: PresenceConsumer
    gateway: mqtt.Client
    #: The shop's app: its public key, and its backend signing its users' tokens.
    app_key: str
    backend: ShopBackend
    events: int = 0
    seen: set[int] = field(default_factory=set)

    def at(self, when: datetime) -> None:
        """Move the clock to `when` and let both workers run a round there."""
        assert when >= self.clock.now
        self.clock.now = when
        self.scenarios.run_once()
        self.delivery.run_once(when)

    def webhook(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events += 1
        body = json.dumps({"event_id": f"evt-{self.events}",
                           "occurred_at": self.clock.now.isoformat(), **event}).encode()
        stamp = int(self.clock.now.timestamp())
        response = self.client.post(f"/webhooks/{self.tenant}", content=body, headers={
            TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(SECRET, stamp, body),
            "content-type": "application/json",
        })
        assert response.status_code in (200, 201, 202), response.text
        result: dict[str, Any] = response.json()
        return result

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """As the shop's back office (an admin key)."""
        response = self.client.request(method, f"/tenants/{self.tenant}{path}", json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def app(self, subject: str, method: str, path: str, body: Any = None) -> Any:
        """As the shop's app, signed in as the shop's user `subject` (a token signed now)."""
        headers = {"Authorization": f"Bearer {self.app_key}",
                   **self.backend.headers(subject, now=self.clock.now)}
        response = self.client.request(method, f"/tenants/{self.tenant}{path}", json=body,
                                       headers=headers)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def number(self, public_id: str) -> int:
        """The database's number of a customer (what messages and coupons point at)."""
        return customer_number(self.engine, tenant=self.tenant, public_id=public_id)

    def presence(self, install_id: str, transition: Transition = Transition.ENTER) -> None:
        """A presence batch published by the store's gateway through the broker; returns
        once the ingest consumer has stored it (and recorded its triggers)."""
        event = make_event(
            tenant=self.tenant, pseudonym=app_pseudonym(install_id), store=STORE,
            transition=transition, first_seen=self.clock.now - timedelta(seconds=30),
            last_seen=self.clock.now,
        )
        payload = batch_payload([event], sent_at=self.clock.now)
        stored = self.ingest.totals.events_new
        publish_all(self.gateway, [(presence_topic(self.tenant, STORE), payload)])
        wait_for(lambda: self.ingest.totals.events_new > stored, what="presence stored")

    def new_messages(self) -> list[Message]:
        """Messages queued since the last call, oldest first."""
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(Message).where(Message.tenant == self.tenant,
                                      col(Message.id).not_in(self.seen or {0}))
                .order_by(col(Message.id))
            ).all()
            for row in rows:
                session.expunge(row)
        self.seen.update(row.id for row in rows if row.id is not None)
        return list(rows)

    def message(self, message_id: int) -> Message:
        with session_scope(self.engine) as session:
            row = session.get(Message, message_id)
            assert row is not None
            session.expunge(row)
            return row

    def offer_key(self, offer_id: int | None) -> str | None:
        if offer_id is None:
            return None
        with session_scope(self.engine) as session:
            offer = session.get(Offer, offer_id)
            return offer.key if offer is not None else None

    def coupon(self, coupon_id: int | None) -> Coupon:
        assert coupon_id is not None
        with session_scope(self.engine) as session:
            coupon = session.get(Coupon, coupon_id)
            assert coupon is not None
            session.expunge(coupon)
            return coupon


def web_push_device(browser: BrowserSubscription) -> dict[str, Any]:
    """The registration a browser's service worker posts after `pushManager.subscribe`."""
    subscription = browser.to_json()
    return {"kind": "web_push", "endpoint": subscription["endpoint"],
            "keys": subscription["keys"]}


Summary = tuple[str | None, str | None, str, str | None]


def summary(shop: Shop, messages: list[Message]) -> list[Summary]:
    return [(m.scenario, m.step, str(m.channel), shop.offer_key(m.offer_id)) for m in messages]


@contextlib.contextmanager
def presence_consumer(
    settings: Settings, engine: Engine, clock: Clock
) -> Iterator[PresenceConsumer]:
    """The ingest consumer on its own event loop in a thread, on the test's clock."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    consumer = PresenceConsumer(settings=settings, engine=engine, now=clock,
                                end_session_on_stop=True)
    thread = threading.Thread(target=loop.run_until_complete, args=(consumer.run(stop),),
                              name="journey-ingest", daemon=True)
    thread.start()
    wait_for(lambda: consumer.connected, what="ingest connected")
    try:
        yield consumer
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=WAIT_S)
        loop.close()


@pytest.fixture
def fcm_server() -> Iterator[FcmSandbox]:
    account = ServiceAccount.generate(FCM_PROJECT)
    with FcmSandbox(FCM_PROJECT, service_account=account) as server:
        yield server


@pytest.fixture
def sender(fcm_server: FcmSandbox, tmp_path: Path) -> Iterator[FcmSender]:
    credentials = fcm_server.write_credentials(tmp_path / "service-account.json")
    settings = FcmSettings(project_id=FCM_PROJECT, credentials_file=str(credentials),
                           endpoint=fcm_server.url)
    with FcmSender(settings) as sender:
        yield sender


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database: the journey runs where production does."""
    with fresh_database("vitrina_journey") as url:
        migrate(url)
        yield url


@pytest.fixture
def shop(
    postgres_url: str, mqtt_namespace: str, sender: FcmSender, broker: LocalBroker
) -> Iterator[Shop]:
    tenant = mqtt_namespace
    with SmtpSandbox(username="shop", password="s3cret") as smtp, SmsSandbox() as sms, \
            WebPushSandbox() as web_push:
        channels = {
            "email": {"host": "127.0.0.1", "port": smtp.port, "username": "shop",
                      "password": "s3cret", "ca_file": str(smtp.ca_file),
                      "from_address": "news@shop.example", "from_name": "The Shop"},
            "sms": {"account_sid": sms.account_sid, "auth_token": sms.auth_token,
                    "from_number": sms.from_number, "base_url": sms.url},
            "web_push": {"subject": "mailto:ops@shop.example"},
        }
        settings: Settings = cloud_settings(tenant=tenant, database_url=postgres_url,
                                            webhook_secrets=[SECRET], channels=channels,
                                            tracking={"public_base_url": PUBLIC_URL},
                                            outbound={"allow": ["127.0.0.1/32"]},
                                            broker=broker)
        engine = make_engine(postgres_url)
        clock = Clock()
        app = create_app(settings, engine=engine, now=clock)
        scenarios = ScenarioWorker(engine=engine, config=engine_config(settings), now=clock)
        try:
            with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as client, \
                    delivery_worker(settings, engine=engine, now=clock,
                                    senders={"push": DeploymentSender(sender.send)}) as worker, \
                    presence_consumer(settings, engine, clock) as ingest, \
                    publisher(broker) as gateway:
                yield Shop(client=client, engine=engine, tenant=tenant, clock=clock,
                           scenarios=scenarios, delivery=worker, smtp=smtp, sms=sms,
                           ingest=ingest, gateway=gateway, web_push=web_push,
                           app_key=issue_key(engine, tenant=tenant, role=Role.APP),
                           backend=register_shop_backend(engine, tenant=tenant))
        finally:
            engine.dispose()


def test_juan(shop: Shop, fcm_server: FcmSandbox) -> None:
    loaded = load_shop(shop.client, tenant=shop.tenant)
    assert loaded.scenarios >= 7

    # --- 1. Newsletter: double opt-in, reminders, welcome series ----------------------------
    juan = shop.api("POST", "/customers", {
        "external_id": "juan", "email": "juan@example.com", "phone": "+34600111222",
        "first_name": "Juan", "birth_date": "1990-07-02", "time_zone": "Europe/Madrid",
        "locale": "es-ES",
    })["id"]
    signup = shop.webhook({"type": "newsletter.signup", "email": "juan@example.com"})
    assert signup["customer_id"] == juan
    shop.at(T0)
    [confirm] = shop.new_messages()
    assert summary(shop, [confirm]) == [("double-opt-in", "confirm", "email", None)]
    # A request for consent: sent at once without marketing consent (Juan gave none).
    assert confirm.transactional
    assert (confirm.status, confirm.sent_at) == ("sent", T0)
    [request] = shop.smtp.wait_for(1)
    assert request.message["Subject"] == "Confirm your subscription"
    assert request.recipients == ("juan@example.com",)
    shop.at(T0 + timedelta(days=1))
    assert shop.new_messages() == []
    shop.at(T0 + timedelta(days=2))
    [reminder] = shop.new_messages()
    assert (reminder.step, reminder.not_before) == ("reminder-1", T0 + timedelta(days=2))
    assert (reminder.transactional, reminder.sent_at) == (True, T0 + timedelta(days=2))
    confirmed_at = T0 + timedelta(days=3)
    shop.clock.now = confirmed_at
    shop.webhook({"type": "newsletter.confirmed", "email": "juan@example.com"})
    shop.at(confirmed_at)
    [welcome] = shop.new_messages()
    assert summary(shop, [welcome]) == [("welcome-series", "welcome-1", "email", None)]
    shop.at(T0 + timedelta(days=9))  # the week after signup: no second reminder
    assert shop.new_messages() == []
    shop.at(confirmed_at + timedelta(days=7))
    assert [m.step for m in shop.new_messages()] == ["welcome-2"]

    # --- 2. Abandoned cart late in the evening: SMS held for quiet hours, then bought -------
    shop.app("juan", "POST", f"/customers/{juan}/consent",
             {"channel": "sms", "granted": True, "source": "web"})
    abandoned = datetime(2026, 3, 13, 21, 30, tzinfo=UTC)  # 22:30 in Madrid
    shop.clock.now = abandoned
    washer = {"sku": "WM-8KG", "name": "Washing machine 8 kg", "category": "washers",
              "quantity": 1, "unit_price": "599.00"}
    shop.webhook({"type": "cart.abandoned", "customer": {"external_id": "juan"},
                  "cart_id": "cart-1", "items": [washer]})
    shop.at(abandoned)
    assert shop.new_messages() == []
    decided = abandoned + timedelta(minutes=15)
    shop.at(decided)
    [cart] = shop.new_messages()
    assert summary(shop, [cart]) == [("cart-abandoned", "coupon", "sms", "washers-15")]
    nine_in_madrid = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)
    assert cart.not_before == nine_in_madrid  # held, not dropped
    assert cart.status == "held"
    assert cart.target_url == "https://shop.example/c/washers"  # the category's page
    coupon = shop.coupon(cart.coupon_id)
    assert coupon.expires_at == nine_in_madrid + timedelta(hours=24)  # from when it reaches him
    assert shop.message(cart.id or 0).sent_at is None
    shop.at(nine_in_madrid)
    assert shop.message(cart.id or 0).sent_at == nine_in_madrid
    [text] = shop.sms.wait_for(1)
    assert text.to == "+34600111222"
    assert coupon.code in text.body
    bought = nine_in_madrid + timedelta(hours=2)
    shop.clock.now = bought
    shop.webhook({"type": "order.created", "customer": {"external_id": "juan"},
                  "order_id": "o-1", "currency": "EUR", "total": "509.15",
                  "items": [washer], "coupons": [coupon.code]})
    shop.at(bought)
    assert shop.coupon(cart.coupon_id).redeemed_at == bought
    assert summary(shop, shop.new_messages()) == [("post-purchase", "thanks", "email", None)]

    # --- 3. Next day in the store: a cross-sell push with 20% off a dryer; opened, not bought
    # Juan signs in to the shop's app: it acts for him with the token the shop signed.
    for channel in ("push", "location_marketing"):
        shop.app("juan", "POST", f"/customers/{juan}/consent",
                 {"channel": channel, "granted": True, "source": "app"})
    shop.app("juan", "POST", f"/customers/{juan}/devices",
             {"kind": "app_beacon", "install_id": JUAN_APP})
    shop.app("juan", "POST", f"/customers/{juan}/devices", {"kind": "fcm", "token": JUAN_FCM})
    ana = shop.app("ana", "POST", "/customers", {"first_name": "Ana",
                                                  "time_zone": "Europe/Madrid"})["id"]
    shop.app("ana", "POST", f"/customers/{ana}/consent",
             {"channel": "location_marketing", "granted": True, "source": "app"})
    shop.app("ana", "POST", f"/customers/{ana}/devices",
             {"kind": "app_beacon", "install_id": ANA_APP})
    shop.app("ana", "POST", f"/customers/{ana}/devices", {"kind": "fcm", "token": ANA_FCM})
    shop.webhook({"type": "order.created", "customer": {"external_id": "ana"},
                  "order_id": "o-2", "currency": "EUR", "total": "599.00", "items": [washer]})
    shop.at(shop.clock.now)
    assert shop.new_messages() == []  # Ana gave no email consent: no thanks either

    visit = datetime(2026, 3, 15, 11, 0, tzinfo=UTC)  # Sunday, 12:00 in Madrid
    shop.clock.now = visit
    shop.presence(JUAN_APP)
    shop.presence(ANA_APP)  # bought a washer too, but gave no push consent: nothing
    shop.at(visit)
    [store_push] = shop.new_messages()
    assert summary(shop, [store_push]) == [("store-cross-sell", "push", "push", "dryer20")]
    assert store_push.customer_id == shop.number(juan)
    assert store_push.store == STORE
    assert store_push.expires_at == visit + timedelta(hours=2)
    dryer20 = shop.coupon(store_push.coupon_id)
    assert dryer20.customer_id == shop.number(juan)
    [received] = fcm_server.wait_for(1)
    assert received.token == JUAN_FCM
    assert dryer20.code in json.dumps(received.message)
    assert shop.message(store_push.id or 0).sent_at == visit
    shop.clock.now = visit + timedelta(minutes=3)
    shop.presence(JUAN_APP)  # a second gateway, same visit: the cooldown keeps it to one
    opened = shop.app("juan", "POST", f"/messages/{store_push.id}/opened")
    assert opened["opened_at"] is not None
    shop.at(shop.clock.now)
    assert shop.new_messages() == []

    # --- the rest of the first month: the welcome series ends, a review request follows ---
    shop.at(confirmed_at + timedelta(days=28))
    assert summary(shop, shop.new_messages()) == [("welcome-series", "welcome-3", "email", None)]
    shop.at(bought + timedelta(days=30))
    assert summary(shop, shop.new_messages()) == [("post-purchase", "review", "email", None)]

    # --- 4. Months later on the web shop: web push, and 50% off the dryer minutes later ----
    back = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # 18:00 in Madrid (CEST)
    shop.clock.now = back
    shop.app("juan", "POST", f"/customers/{juan}/consent",
             {"channel": "web_push", "granted": True, "source": "web"})
    shop.app("juan", "POST", f"/customers/{juan}/devices",
             web_push_device(shop.web_push.subscribe()))
    shop.at(back)
    assert shop.new_messages() == []
    shop.at(back + timedelta(minutes=5))
    [escalation] = shop.new_messages()
    assert summary(shop, [escalation]) == [
        ("web-push-escalation", "escalate", "web_push", "dryer50")
    ]
    dryer50 = shop.coupon(escalation.coupon_id)
    [pushed] = shop.web_push.wait_for(1)
    assert dryer50.code in pushed.payload.decode()
    assert shop.message(escalation.id or 0).sent_at == back + timedelta(minutes=5)
    assert dryer50.expires_at == back + timedelta(minutes=5, days=3)

    # --- 5. He buys the dryer: spend passes 800, 27 EUR credit confirmed by email ----------
    # (what he paid: 509.15 for the washer and 349.50 for the dryer, 858.65; the list
    # prices, 1,298, count for nothing)
    dryer = {"sku": "TD-8KG-HP", "name": "Heat-pump dryer 8 kg", "category": "dryers",
             "quantity": 1, "unit_price": "699.00"}
    dryer_bought = back + timedelta(minutes=20)
    shop.clock.now = dryer_bought
    shop.webhook({"type": "order.created", "customer": {"external_id": "juan"},
                  "order_id": "o-3", "currency": "EUR", "total": "349.50",
                  "items": [dryer], "coupons": [dryer50.code]})
    shop.at(dryer_bought)
    after_dryer = shop.new_messages()
    assert sorted(summary(shop, after_dryer)) == [
        ("loyalty", "email", "email", None), ("post-purchase", "thanks", "email", None),
    ]
    credit = next(m for m in after_dryer if m.scenario == "loyalty")
    assert "27" in credit.content["subject"]
    assert shop.coupon(escalation.coupon_id).redeemed_at == dryer_bought
    assert shop.message(escalation.id or 0).converted_at == dryer_bought
    assert shop.message(store_push.id or 0).converted_at is None

    # Never a dryer offer once he has a dryer: not on a new browser, not in the store.
    shop.app("juan", "POST", f"/customers/{juan}/devices",
             web_push_device(shop.web_push.subscribe()))
    shop.at(dryer_bought + timedelta(minutes=10))
    later_visit = datetime(2026, 6, 12, 10, 0, tzinfo=UTC)
    shop.clock.now = later_visit
    shop.presence(JUAN_APP)
    shop.at(later_visit)
    assert shop.new_messages() == []

    # --- his birthday: a gift push, held until 09:00 on his clock ---------------------------
    birthday = datetime(2026, 7, 2, 5, 0, tzinfo=UTC)  # 07:00 in Madrid
    shop.at(birthday)
    [gift] = shop.new_messages()
    assert summary(shop, [gift]) == [("birthday", "gift", "push", None)]
    assert gift.not_before == datetime(2026, 7, 2, 7, 0, tzinfo=UTC)
    assert gift.status == "held"
    assert shop.message(gift.id or 0).sent_at is None
    shop.at(gift.not_before)
    assert shop.message(gift.id or 0).sent_at == gift.not_before
    tokens = [message.token for message in fcm_server.wait_for(2)]
    assert tokens == [JUAN_FCM, JUAN_FCM]  # the store push and the gift; Ana got nothing

    shop.at(dryer_bought + timedelta(days=30))
    assert summary(shop, shop.new_messages()) == [("post-purchase", "review", "email", None)]

    # --- a year without a visit, an order or a click: reactivation, then a reminder -------
    # (Ana, inactive longer, gave no email consent: she gets nothing.)
    year_later = datetime(2027, 6, 14, 10, 0, tzinfo=UTC)
    shop.at(year_later)
    [miss_you] = shop.new_messages()
    assert summary(shop, [miss_you]) == [("reactivation", "miss-you", "email", None)]
    assert miss_you.customer_id == shop.number(juan)
    shop.at(year_later + timedelta(days=15))
    assert [m.step for m in shop.new_messages()] == ["reminder"]

    # Every email went to Juan, in this order, each with its unsubscribe link: the double
    # opt-in request and its reminder first, then the marketing he consented to.
    subjects = [
        "Confirm your subscription", "Still interested? Confirm your subscription",
        "Welcome to Vitrina", "How to choose a washing machine", "Thank you for your order",
        "Care tips for your appliances", "How is it going?",
    ]
    later = ["Thank you for your order", "You have €27.00 of credit"]
    last = ["How is it going?", "We miss you, Juan", "We miss you, Juan"]
    emails = shop.smtp.wait_for(len(subjects) + len(later) + len(last))
    titles = [email.message["Subject"] for email in emails]
    assert titles[:len(subjects)] == subjects
    assert sorted(titles[len(subjects):-len(last)]) == later
    assert titles[-len(last):] == last
    for email in emails:
        assert email.recipients == ("juan@example.com",)
        assert f"{PUBLIC_URL}/" in email.part("plain")
        assert email.message["List-Unsubscribe"]
    assert len(shop.sms.received) == 1
    assert len(shop.web_push.received) == 1  # the second browser got no dryer offer

    # The funnel keeps the consent requests apart from the marketing figures.
    funnel = shop.api("GET", "/analytics/funnel?since=2026-03-01T00:00:00Z"
                             "&until=2027-07-01T00:00:00Z")
    transactional = {(row["scenario"], row["step"]): row["sent"]
                     for row in funnel if row["transactional"]}
    assert transactional == {("double-opt-in", "confirm"): 1, ("double-opt-in", "reminder-1"): 1}
