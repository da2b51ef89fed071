"""The outbox of webhooks to the shop, on SQLite and PostgreSQL, against a real local HTTP
endpoint: a step's webhook is posted once, signed as the shop checks it; 503 with
Retry-After is tried again no sooner; a 404 is final; timeouts, rate limits and
unreachable shops are retried until the attempts are spent; a hanging endpoint holds no
trigger batch; and two workers never post the same webhook twice."""

from __future__ import annotations

import ipaddress
import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from cloud.customers.crud import create_customer
from cloud.customers.models import CustomerCreate
from cloud.db import session_scope
from cloud.metrics import REGISTRY
from cloud.outbound import OutboundPolicy
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.models import CustomerTag, Journey
from cloud.scenarios.run import EngineConfig, RunReport
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.settings import ScenarioSettings
from cloud.triggers import TriggerKind, record_trigger
from cloud.webhooks.outbound import (
    MAX_ATTEMPTS,
    OutboundWebhook,
    ScenarioStepWebhook,
    WebhookSender,
    WebhookStatus,
    queue_webhook,
)
from cloud.webhooks.signing import SignatureError, verify_signature
from provisioning.local_broker import free_port
from tests.cloud.delivery.queue_helpers import race
from tests.cloud.delivery.shop_endpoint import ShopEndpoint
from tests.cloud.factories import LOCAL_SERVERS

TENANT = "shop"
SECRET = "whsec-outbound-0123"
#: Midday UTC: no quiet hours get in the way.
NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
CONFIG = EngineConfig(settings=ScenarioSettings(),
                      links=Links(base_url="https://t.example", secret="s" * 32))


@pytest.fixture
def shop() -> Iterator[ShopEndpoint]:
    with ShopEndpoint() as endpoint:
        yield endpoint


def make_sender(engine: Engine, *, timeout_s: float = 5.0, batch_size: int = 16,
                policy: OutboundPolicy = LOCAL_SERVERS) -> WebhookSender:
    return WebhookSender(
        engine=engine, secrets=lambda tenant: [SECRET] if tenant == TENANT else [],
        timeout_s=timeout_s, policy=policy, rng=random.Random(3),
        batch_size=batch_size,
    )


def new_customer(engine: Engine, name: str = "ana") -> int:
    with session_scope(engine) as session:
        row = create_customer(session, tenant=TENANT, now=NOW,
                              data=CustomerCreate(external_id=name))
        session.commit()
        assert row.id is not None
        return row.id


def queue(engine: Engine, customer_id: int, url: str, *, journey_id: int) -> int:
    with session_scope(engine) as session:
        webhook_id = queue_webhook(
            session, tenant=TENANT, customer_id=customer_id, journey_id=journey_id,
            step="hook", url=url, body={"type": "scenario.step", "journey_id": journey_id},
            now=NOW,
        )
        session.commit()
    assert webhook_id is not None
    return webhook_id


def webhook(engine: Engine, webhook_id: int) -> OutboundWebhook:
    with session_scope(engine) as session:
        row = session.get(OutboundWebhook, webhook_id)
        assert row is not None
        return row


def all_webhooks(engine: Engine) -> list[OutboundWebhook]:
    with session_scope(engine) as session:
        return list(session.exec(select(OutboundWebhook).order_by(col(OutboundWebhook.id))))


def notify_scenario(engine: Engine, url: str) -> None:
    """A webhook to the shop, then a tag: the tag shows the journey did not wait."""
    spec = ScenarioSpec.model_validate({
        "key": "notify", "name": "notify", "entry": {"event": "cart.abandoned"},
        "steps": [
            {"id": "hook", "type": "webhook", "url": url},
            {"id": "tag", "type": "tag", "add": ["notified"]},
        ],
    })
    with session_scope(engine) as session:
        save_scenario(session, tenant=TENANT, spec=spec, now=NOW)
        session.commit()


def trigger(engine: Engine, customer_id: int, source: str) -> None:
    with session_scope(engine) as session:
        record_trigger(session, tenant=TENANT, customer_id=customer_id,
                       kind=TriggerKind.CART_ABANDONED, occurred_at=NOW, source_key=source,
                       now=NOW)
        session.commit()


def process(engine: Engine, catalog: Catalog) -> RunReport:
    with session_scope(engine) as session:
        report = process_triggers(session, catalog=catalog, config=CONFIG, now=NOW, limit=500)
        session.commit()
    return report


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("vitrina_outbound_webhooks_total",
                                     {"outcome": outcome}) or 0.0


def test_a_steps_webhook_is_posted_once_signed_as_the_shop_checks_it(
    engine: Engine, shop: ShopEndpoint
) -> None:
    ana = new_customer(engine)
    notify_scenario(engine, shop.url("/hooks"))
    trigger(engine, ana, "cart:1")
    sent_before = counted("sent")

    report = process(engine, Catalog())
    assert (report.started, report.webhooks) == (1, 1)
    assert shop.received == []  # nothing is posted while triggers are handled
    with session_scope(engine) as session:
        [journey] = session.exec(select(Journey)).all()
        assert (journey.status, journey.reason) == ("done", "completed")
        assert session.get(CustomerTag, (ana, "notified")) is not None

    sender = make_sender(engine)
    assert sender.run_once(NOW) == 1
    [request] = shop.wait_for(1)
    assert request.path == "/hooks"
    assert request.headers["content-type"] == "application/json"
    stamp = request.headers["x-vitrina-timestamp"]
    signature = request.headers["x-vitrina-signature"]
    # What the shop does with it:
    verify_signature(secrets=[SECRET], timestamp=stamp, signature=signature,
                     body=request.body, now=NOW)
    with pytest.raises(SignatureError):
        verify_signature(secrets=["another-secret"], timestamp=stamp, signature=signature,
                         body=request.body, now=NOW)
    assert json.loads(request.body) == {
        "id": f"j{journey.id}:hook", "type": "scenario.step", "tenant": TENANT,
        "customer_id": ana, "scenario": "notify", "step": "hook", "journey_id": journey.id,
        "entry": "cart.abandoned", "variant": None, "at": NOW.isoformat(),
    }
    # ...and is what the OpenAPI document's `webhooks` publishes.
    ScenarioStepWebhook.model_validate_json(request.body)
    [row] = all_webhooks(engine)
    assert (row.status, row.attempts, row.last_status, row.last_error, row.sent_at) == (
        WebhookStatus.SENT, 1, 200, None, NOW
    )
    assert counted("sent") == sent_before + 1

    assert sender.run_once(NOW + timedelta(days=1)) == 0
    assert len(shop.received) == 1


def test_503_with_retry_after_is_posted_again_no_sooner_and_sent_once(
    engine: Engine, shop: ShopEndpoint
) -> None:
    shop.script("/busy", (503, {"Retry-After": "120"}))
    webhook_id = queue(engine, new_customer(engine), shop.url("/busy"), journey_id=7)
    sender = make_sender(engine)

    assert sender.run_once(NOW) == 1
    row = webhook(engine, webhook_id)
    assert (row.status, row.attempts, row.last_status, row.last_error) == (
        WebhookStatus.QUEUED, 1, 503, "HTTP 503"
    )
    assert row.next_attempt_at == NOW + timedelta(seconds=120)  # not our own 15-30 s
    assert sender.run_once(NOW + timedelta(seconds=119)) == 0
    later = NOW + timedelta(seconds=120)
    assert sender.run_once(later) == 1
    row = webhook(engine, webhook_id)
    assert (row.status, row.attempts, row.last_status, row.sent_at) == (
        WebhookStatus.SENT, 2, 200, later
    )
    assert sender.run_once(NOW + timedelta(days=1)) == 0
    first, second = shop.wait_for(2)
    assert len(shop.received) == 2
    assert first.body == second.body  # the same "id": the shop can tell it is a repeat
    assert json.loads(second.body)["id"] == "j7:hook"
    # Signed when posted: a retry hours later would still pass the shop's freshness check.
    assert second.headers["x-vitrina-timestamp"] == str(int(later.timestamp()))
    verify_signature(secrets=[SECRET], timestamp=second.headers["x-vitrina-timestamp"],
                     signature=second.headers["x-vitrina-signature"], body=second.body,
                     now=later)


def test_a_webhook_to_a_refused_target_fails_for_good_at_send_time_unposted(
    engine: Engine, shop: ShopEndpoint
) -> None:
    """A webhook queued before the rules (or to a name that now resolves inside): the
    worker checks again, posts nothing, records why and counts it; no retry."""
    inside = queue(engine, new_customer(engine), shop.url("/hook"), journey_id=9)
    rebound = queue(engine, new_customer(engine, "bea"), "https://shop.invalid/hook",
                    journey_id=10)
    policy = OutboundPolicy(resolver=lambda host, port: [ipaddress.ip_address("10.1.2.3")])
    sender = make_sender(engine, policy=policy)
    refusals_before = REGISTRY.get_sample_value("vitrina_outbound_refusals_total", {
        "client": "webhook", "stage": "send", "rule": "address"}) or 0.0

    assert sender.run_once(NOW) == 2
    for webhook_id, why in ((inside, "127.0.0.1 is loopback"),
                            (rebound, "resolves to 10.1.2.3, which is private")):
        row = webhook(engine, webhook_id)
        assert (row.status, row.attempts, row.last_status) == (WebhookStatus.FAILED, 1, None)
        assert row.last_error is not None
        assert row.last_error.startswith("refused (address): ")
        assert why in row.last_error
    assert REGISTRY.get_sample_value("vitrina_outbound_refusals_total", {
        "client": "webhook", "stage": "send", "rule": "address"}) == refusals_before + 2
    assert sender.run_once(NOW + timedelta(days=2)) == 0
    assert shop.received == []


def test_a_404_fails_for_good_without_another_try(engine: Engine, shop: ShopEndpoint) -> None:
    shop.script("/gone", (404, {}))
    webhook_id = queue(engine, new_customer(engine), shop.url("/gone"), journey_id=8)
    sender = make_sender(engine)
    failed_before = counted("failed")

    assert sender.run_once(NOW) == 1
    row = webhook(engine, webhook_id)
    assert (row.status, row.attempts, row.last_status, row.last_error, row.sent_at) == (
        WebhookStatus.FAILED, 1, 404, "HTTP 404", None
    )
    assert counted("failed") == failed_before + 1
    assert sender.run_once(NOW + timedelta(days=2)) == 0
    assert len(shop.received) == 1


def test_timeouts_rate_limits_and_unreachable_shops_are_retried_until_attempts_run_out(
    engine: Engine, shop: ShopEndpoint
) -> None:
    shop.script("/limited", (408, {}), (429, {}))
    customer = new_customer(engine)
    limited = queue(engine, customer, shop.url("/limited"), journey_id=1)
    unreachable = queue(engine, customer, f"http://127.0.0.1:{free_port()}/hook", journey_id=2)
    sender = make_sender(engine)

    assert sender.run_once(NOW) == 2
    assert (webhook(engine, limited).status, webhook(engine, limited).last_status) == (
        WebhookStatus.QUEUED, 408
    )
    row = webhook(engine, unreachable)
    assert (row.status, row.last_status, row.last_error) == (
        WebhookStatus.QUEUED, None, "ConnectionError"
    )
    # Backoff grows to an hour at most: a round every two hours finds both due.
    for round_ in range(1, MAX_ATTEMPTS):
        sender.run_once(NOW + timedelta(hours=2 * round_))
    row = webhook(engine, limited)
    assert (row.status, row.attempts, row.last_status) == (WebhookStatus.SENT, 3, 200)
    row = webhook(engine, unreachable)
    assert (row.status, row.attempts, row.last_error) == (
        WebhookStatus.FAILED, MAX_ATTEMPTS, "ConnectionError"
    )
    assert sender.run_once(NOW + timedelta(days=30)) == 0


def test_a_hanging_shop_endpoint_holds_no_trigger_batch(
    engine: Engine, shop: ShopEndpoint
) -> None:
    shop.hanging.add("/slow")
    ana, bob = new_customer(engine, "ana"), new_customer(engine, "bob")
    notify_scenario(engine, shop.url("/slow"))
    catalog = Catalog()
    trigger(engine, ana, "cart:1")
    assert process(engine, catalog).webhooks == 1

    # The sender is stuck in its POST (long timeout, the endpoint does not answer)...
    sender = make_sender(engine, timeout_s=20.0)
    posting = threading.Thread(target=sender.run_once, args=(NOW,))
    posting.start()
    try:
        shop.wait_for(1)
        # ...while the next batch, for the same customer and another, is handled at once:
        # it posts nothing, and the sender holds no lock or transaction.
        trigger(engine, ana, "cart:2")
        trigger(engine, bob, "cart:3")
        started = time.monotonic()
        report = process(engine, catalog)
        elapsed = time.monotonic() - started
        assert (report.started, report.webhooks) == (2, 2)
        assert elapsed < 5.0
        assert len(shop.received) == 1
        assert posting.is_alive()
    finally:
        shop.release.set()
        posting.join(timeout=30)
    assert not posting.is_alive()
    statuses = [row.status for row in all_webhooks(engine)]
    assert statuses == [WebhookStatus.SENT, WebhookStatus.QUEUED, WebhookStatus.QUEUED]


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_two_workers_claiming_at_once_never_post_a_webhook_twice(
    engine: Engine, shop: ShopEndpoint
) -> None:
    customers = [new_customer(engine, f"c{n}") for n in range(4)]
    ids = [queue(engine, customers[n % 4], shop.url("/race"), journey_id=n) for n in range(60)]
    senders = [make_sender(engine, batch_size=7) for _ in range(2)]
    claimed = race([lambda: senders[0].run_once(NOW), lambda: senders[1].run_once(NOW)])

    assert sum(claimed) == 60
    assert min(claimed) > 0  # both really worked
    received = shop.wait_for(60)
    assert len(received) == 60
    keys: list[Any] = [json.loads(request.body)["id"] for request in received]
    assert len(set(keys)) == 60
    for webhook_id in ids:
        row = webhook(engine, webhook_id)
        assert (row.status, row.attempts) == (WebhookStatus.SENT, 1)
