"""The push senders against a provider that answers slowly and serves few connections at
a time (sandbox.slow: a small listen backlog, a few connections accepted at once, each
answer delayed), counting deliveries per collapse key: every push arrives, none twice,
no request times out, and waiting for a slot never counts against a time-out.

(The thousand-push run, with the fixed pool it replaced, is bench/bench_delivery_slow_provider.py.)
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloud.channels.fcm import FcmSender, FcmSettings, PushMessage
from cloud.channels.inflight import LimitSettings
from cloud.channels.results import SendResult
from cloud.channels.retry import RetryPolicy
from cloud.channels.vapid import generate_vapid_keys
from cloud.channels.web_push_service import WebPushMessage, WebPushSender, WebPushSubscription
from cloud.outbound import AllowList, OutboundPolicy
from sandbox.fcm import ServiceAccount, make_token
from sandbox.slow import SlowProvider
from tests.cloud.channels.conftest import PROJECT

#: The production policy's shape with short waits: a time-out would be retried (and show).
RETRY = RetryPolicy(attempts=4, initial_backoff_s=0.05, max_backoff_s=0.2, jitter_s=0.05)


@pytest.fixture
def slow() -> Iterator[SlowProvider]:
    # Three connections served at a time, two more may wait in the backlog; 20 ms answers.
    with SlowProvider(workers=3, backlog=2, delay_s=0.02, keepalive_requests=50,
                      idle_s=1.0) as provider:
        yield provider


def fcm_settings(
    slow: SlowProvider, account: ServiceAccount, tmp_path: Path, **fields: float
) -> FcmSettings:
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account.info(f"{slow.url}/token")))
    return FcmSettings(project_id=PROJECT, credentials_file=str(path), endpoint=slow.url,
                       **fields)


def pushes(count: int) -> list[PushMessage]:
    return [PushMessage(token=make_token(), title="20% off dryers", body="Only today",
                        idempotency_key=f"slow:{n}") for n in range(count)]


def tries(results: list[SendResult], code: str) -> int:
    return sum(tried.error_code == code for result in results for tried in result.history())


def test_fcm_pushes_all_arrive_once_from_a_provider_that_serves_three_at_a_time(
    slow: SlowProvider, service_account: ServiceAccount, tmp_path: Path
) -> None:
    settings = fcm_settings(slow, service_account, tmp_path)
    with FcmSender(settings, retry=RETRY) as sender:
        started = time.monotonic()
        results = sender.send(pushes(100))  # one send_each: 100 requests at once
        elapsed = time.monotonic() - started

    assert all(result.ok for result in results)
    assert tries(results, "DEADLINE_EXCEEDED") == 0
    assert len(slow.deliveries) == 100
    assert slow.duplicates() == {}
    assert slow.unanswered == 0
    assert slow.peak_open <= 3
    # Each try carries its own time with the provider, not the wait for its slot: the
    # last requests waited most of the send's time for theirs.
    latencies = sorted(result.latency_ms or 0 for result in results)
    assert elapsed > 0.5
    assert 0 < latencies[len(latencies) // 2] < 150  # about the 20 ms answer


def test_web_pushes_all_arrive_once_from_a_provider_that_serves_three_at_a_time(
    slow: SlowProvider,
) -> None:
    policy = OutboundPolicy(allow=AllowList.parse([f"127.0.0.1:{slow.port}"]))
    messages = [
        WebPushMessage(subscription=subscription(f"{slow.url}/push/b{n}"), title="50% off",
                       body="The dryer", idempotency_key=f"web:{n}")
        for n in range(40)
    ]
    with WebPushSender(generate_vapid_keys(), subject="mailto:ops@shop.example",
                       policy=policy, retry=RETRY) as sender:
        results = sender.deliver(messages)

    assert all(result.ok for result in results)
    assert tries(results, "DEADLINE_EXCEEDED") == 0
    assert len(slow.deliveries) == 40
    assert slow.duplicates() == {}
    assert slow.peak_open <= 3


def test_waiting_for_a_slot_does_not_count_against_the_time_out(
    service_account: ServiceAccount, tmp_path: Path
) -> None:
    # Two connections served at a time, 20 ms an answer: 40 pushes take 0.4 s or more,
    # twice the 0.2 s time-out. A time-out counted from a request's start (as the fixed
    # pool's was) fails the half that waits longest; counted from the wire, none.
    with SlowProvider(workers=2, backlog=4, delay_s=0.02, idle_s=1.0) as slow:
        settings = fcm_settings(slow, service_account, tmp_path, timeout_s=0.2)
        limits = LimitSettings.for_timeout(0.2, maximum=2)  # no overshoot: no queue there
        with FcmSender(settings, retry=RETRY, limits=limits) as sender:
            started = time.monotonic()
            results = sender.send(pushes(40))
            elapsed = time.monotonic() - started

        assert elapsed > 0.4
        assert all(result.ok for result in results)
        assert tries(results, "DEADLINE_EXCEEDED") == 0
        assert len(slow.deliveries) == 40
        assert slow.duplicates() == {}


def subscription(endpoint: str) -> WebPushSubscription:
    """A browser's keys (the slow provider decrypts nothing; the sender encrypts to them)."""
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return WebPushSubscription(endpoint=endpoint, p256dh=_b64(point), auth=_b64(os.urandom(16)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
