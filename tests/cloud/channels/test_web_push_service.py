"""WebPushSender against the local push service: VAPID checked, payload decrypted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.channels.dedupe import collapse_id
from cloud.channels.inflight import sending_until
from cloud.channels.results import NOT_SENT
from cloud.channels.retry import RetryPolicy
from cloud.channels.vapid import VapidKeys, generate_vapid_keys
from cloud.channels.web_push_service import (
    MAX_PLAINTEXT_BYTES,
    InvalidSubscriptionError,
    WebPushMessage,
    WebPushSender,
    WebPushSubscription,
    payload_for,
)
from cloud.outbound import OutboundPolicy
from sandbox.webpush import BrowserSubscription, PushOutcome, WebPushSandbox
from tests.cloud.factories import LOCAL_SERVERS

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.2, jitter_s=0.05)


@pytest.fixture(scope="module")
def vapid() -> VapidKeys:
    return generate_vapid_keys()


@pytest.fixture
def service() -> Iterator[WebPushSandbox]:
    with WebPushSandbox() as push_service:
        yield push_service


@pytest.fixture
def sender(vapid: VapidKeys) -> Iterator[WebPushSender]:
    with WebPushSender(vapid, subject="mailto:ops@shop.example", policy=LOCAL_SERVERS,
                       retry=FAST_RETRY) as sender:
        yield sender


def message(subscription: BrowserSubscription, key: str = "k1", **overrides: Any) -> WebPushMessage:
    fields: dict[str, Any] = {
        "subscription": WebPushSubscription.from_json(subscription.to_json(), policy=LOCAL_SERVERS),
        "title": "50% off the dryer",
        "body": "Still thinking about it? Today only.",
        "idempotency_key": key,
        "url": "https://shop.example/dryers/d-1",
        "icon_url": "https://shop.example/icon.png",
        "data": {"offer_id": "dryer-50"},
        "ttl_s": 600,
        "urgency": "high",
    }
    fields.update(overrides)
    return WebPushMessage(**fields)


def test_push_arrives_decrypted_with_its_headers(
    sender: WebPushSender, service: WebPushSandbox, vapid: VapidKeys
) -> None:
    browser = service.subscribe(vapid.application_server_key)

    [result] = sender.deliver([message(browser)])

    assert result.ok
    assert result.token == browser.endpoint
    [delivery] = service.received.snapshot()
    assert result.provider_message_id == f"{service.url}/message/{delivery.message_id}"
    assert delivery.json() == {
        "title": "50% off the dryer",
        "body": "Still thinking about it? Today only.",
        "tag": collapse_id("k1"),
        "url": "https://shop.example/dryers/d-1",
        "icon": "https://shop.example/icon.png",
        "data": {"offer_id": "dryer-50"},
    }
    assert delivery.ttl_s == 600
    assert delivery.urgency == "high"
    assert delivery.topic == collapse_id("k1")
    assert delivery.vapid_subject == "mailto:ops@shop.example"


def test_explicit_topic_is_sent(sender: WebPushSender, service: WebPushSandbox) -> None:
    browser = service.subscribe()

    assert sender.deliver([message(browser, topic="cart-reminder")])[0].ok

    assert service.received.snapshot()[0].topic == "cart-reminder"


def test_subscription_made_for_another_key_refuses_the_push(
    sender: WebPushSender, service: WebPushSandbox
) -> None:
    browser = service.subscribe(generate_vapid_keys().application_server_key)

    [result] = sender.deliver([message(browser)])

    assert result.error_code == "UNAUTHENTICATED"
    assert not result.permanent
    assert not result.transient
    assert service.refusals.snapshot()[0][1] == 403


@pytest.mark.parametrize(
    ("outcome", "code", "permanent"),
    [(PushOutcome.GONE, "UNREGISTERED", True), (PushOutcome.NOT_FOUND, "UNREGISTERED", True)],
)
def test_expired_subscriptions_are_dead_addresses(
    sender: WebPushSender, service: WebPushSandbox, outcome: PushOutcome, code: str, permanent: bool
) -> None:
    browser = service.subscribe()
    service.script(browser, then=outcome)

    [result] = sender.deliver([message(browser)])

    assert result.error_code == code
    assert result.permanent is permanent
    assert result.address_dead
    assert len(service.refusals.snapshot()) == 1


def test_unsubscribed_user_gives_410(sender: WebPushSender, service: WebPushSandbox) -> None:
    browser = service.subscribe()
    service.unsubscribe(browser)

    [result] = sender.deliver([message(browser)])

    assert result.address_dead
    assert service.refusals.snapshot()[0][1] == 410


def test_429_waits_for_retry_after(sender: WebPushSender, service: WebPushSandbox) -> None:
    browser = service.subscribe()
    service.retry_after_s = 1
    service.script(browser, PushOutcome.TOO_MANY_REQUESTS)
    started = time.monotonic()

    [result] = sender.deliver([message(browser)])

    assert result.ok
    assert time.monotonic() - started >= 1.0
    assert len(service.received.snapshot()) == 1
    assert [t.error_code for t in result.history()] == ["QUOTA_EXCEEDED", None]


def test_nothing_starts_after_the_sends_deadline(
    sender: WebPushSender, service: WebPushSandbox
) -> None:
    browser = service.subscribe()
    with sending_until(time.monotonic()):
        [result] = sender.deliver([message(browser)])

    assert (result.error_code, result.transient) == (NOT_SENT, True)
    assert service.received.snapshot() == []


def test_503_is_retried_then_given_up(sender: WebPushSender, service: WebPushSandbox) -> None:
    browser = service.subscribe()
    service.retry_after_s = None
    service.script(browser, then=PushOutcome.UNAVAILABLE)

    [result] = sender.deliver([message(browser)])

    assert result.error_code == "UNAVAILABLE"
    assert result.transient
    assert len(service.refusals.snapshot()) == FAST_RETRY.attempts


def test_payload_over_4kb_is_refused_before_sending(
    sender: WebPushSender, service: WebPushSandbox
) -> None:
    browser = service.subscribe()
    big = message(browser, body="x" * MAX_PLAINTEXT_BYTES)

    [result] = sender.deliver([big])

    assert result.error_code == "PAYLOAD_TOO_LARGE"
    assert result.permanent
    assert service.refusals.snapshot() == []
    assert service.received.snapshot() == []


def test_largest_allowed_payload_fits_the_services_4096_bytes(
    sender: WebPushSender, service: WebPushSandbox
) -> None:
    browser = service.subscribe()
    overhead = len(payload_for(message(browser, body="")))
    fitting = message(browser, body="y" * (MAX_PLAINTEXT_BYTES - overhead))

    [result] = sender.deliver([fitting])

    assert result.ok
    assert len(service.received.snapshot()[0].payload) == MAX_PLAINTEXT_BYTES


def test_bad_topic_or_urgency_is_refused_locally(
    sender: WebPushSender, service: WebPushSandbox
) -> None:
    browser = service.subscribe()

    results = sender.deliver(
        [message(browser, topic="has spaces"), message(browser, urgency="asap"), message(browser)]
    )

    assert [r.error_code for r in results] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT", None]


def test_unreachable_service_is_transient(vapid: VapidKeys, service: WebPushSandbox) -> None:
    browser = service.subscribe()
    service.stop()

    with WebPushSender(
        vapid, subject="https://shop.example", policy=LOCAL_SERVERS,
        retry=RetryPolicy(attempts=1),
    ) as sender:
        [result] = sender.deliver([message(browser)])

    assert result.error_code == "UNAVAILABLE"
    assert result.transient


def test_an_endpoint_the_outbound_rules_refuse_is_not_posted_to(
    vapid: VapidKeys, service: WebPushSandbox
) -> None:
    """Without the tests' allow-list, the local push service is an inside address: the
    message fails for good, and the service sees nothing."""
    browser = service.subscribe()
    with WebPushSender(vapid, subject="https://shop.example", policy=OutboundPolicy(),
                       retry=RetryPolicy(attempts=3), tenant="shop") as sender:
        [result] = sender.deliver([message(browser)])

    assert (result.ok, result.error_code, result.permanent) == (False, "FORBIDDEN_TARGET", True)
    assert service.received.snapshot() == []


def test_batch_keeps_order(sender: WebPushSender, service: WebPushSandbox) -> None:
    browsers = [service.subscribe() for _ in range(12)]
    service.script(browsers[4], then=PushOutcome.GONE)

    results = sender.deliver([message(b, key=f"k{i}") for i, b in enumerate(browsers)])

    assert [r.token for r in results] == [b.endpoint for b in browsers]
    assert [r.ok for r in results] == [i != 4 for i in range(12)]
    assert len(service.received.snapshot()) == 11


@pytest.mark.parametrize(
    ("subscription", "reason"),
    [
        ({}, "expected"),
        ({"endpoint": "http://push.example/x", "keys": {"p256dh": "a", "auth": "b"}}, "https"),
        (
            {"endpoint": "https://push.example/x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}},
            "P-256",
        ),
        ({"endpoint": "https://push.example/x", "keys": {"p256dh": 1, "auth": "b"}}, "strings"),
    ],
)
def test_invalid_browser_subscriptions_are_refused(
    subscription: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidSubscriptionError, match=reason):
        WebPushSubscription.from_json(subscription, policy=LOCAL_SERVERS)


def test_subject_must_be_contactable(vapid: VapidKeys) -> None:
    with pytest.raises(ValueError, match="mailto"):
        WebPushSender(vapid, subject="ops@shop.example", policy=LOCAL_SERVERS)
