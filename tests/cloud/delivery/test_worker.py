"""The delivery worker's send-time checks, on SQLite and PostgreSQL, against a real SMTP
relay: a transactional message (the double opt-in email) goes out without marketing
consent, but not after a "no" given since it was requested; marketing without consent
is still suppressed; and email with a public base URL that is not https is refused when
the worker starts, not retried message by message. Its loop also posts the shop's
webhooks, beside the messages: a shop endpoint that hangs delays no email."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col, select

from cloud.channels import DeploymentSender, SendResult
from cloud.channels.inflight import send_deadline
from cloud.channels.results import NOT_SENT
from cloud.channels.retry import NO_RETRY
from cloud.channels.smtp import EmailSender, SmtpSettings
from cloud.db import session_scope
from cloud.delivery.senders import ChannelSenders
from cloud.delivery.worker import DeliveryWorker
from cloud.messages.models import AttemptOutcome, Message, MessageStatus
from cloud.messages.queue import LEASE, Outgoing
from cloud.webhooks.outbound import OutboundWebhook, WebhookStatus, queue_webhook
from sandbox.smtp import SmtpSandbox
from tests.cloud.delivery.queue_helpers import (
    BASE_URL,
    NOW,
    attempts,
    message,
    new_customer,
    outgoing,
    queue,
    queue_settings,
    token_for,
    withdraw,
)
from tests.cloud.delivery.shop_endpoint import ShopEndpoint
from tests.cloud.factories import cloud_settings

EMAIL = "email"


@pytest.fixture
def relay() -> Iterator[SmtpSandbox]:
    with SmtpSandbox(username="shop", password="s3cret") as server:
        yield server


def smtp_settings(relay: SmtpSandbox) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1", port=relay.port, username="shop", password="s3cret",
        ca_file=str(relay.ca_file), from_address="news@shop.example",
    )


@pytest.fixture
def worker(engine: Engine, migrated_url: str, tenant: str, relay: SmtpSandbox) -> DeliveryWorker:
    smtp = smtp_settings(relay)
    settings = queue_settings(tenant=tenant, database_url=migrated_url,
                              channels={"email": smtp.model_dump()})
    return DeliveryWorker(
        engine=engine, settings=settings, rng=random.Random(1),
        senders=email_only(smtp),
    )


def request(tenant: str, customer_id: int, key: str, requested_at: datetime) -> Outgoing:
    """A double opt-in email as the scenario engine queues it: transactional, no offer,
    with when its consent request began (the journey's start)."""
    return outgoing(
        tenant, customer_id, key, channel=EMAIL, transactional=True,
        consent_requested_at=requested_at,
        scenario="double-opt-in", step="confirm", target_url="https://shop.example/confirm",
    )


def email_only(smtp: SmtpSettings) -> ChannelSenders:
    """The worker's senders: email through the local relay, one try per round."""
    return ChannelSenders({"email": DeploymentSender(EmailSender(smtp, retry=NO_RETRY).deliver)})


def test_a_consent_request_goes_out_without_consent_but_not_after_a_no(
    engine: Engine, tenant: str, worker: DeliveryWorker, relay: SmtpSandbox
) -> None:
    nobody = ()
    juan = new_customer(engine, tenant, consent=nobody, email="juan@example.net")
    ana = new_customer(engine, tenant, consent=nobody, email="ana@example.net")
    bob = new_customer(engine, tenant, consent=nobody, email="bob@example.net")
    no_email = new_customer(engine, tenant, consent=nobody)
    # Bob unsubscribed a year ago and signs up again: the signup is the newer answer.
    withdraw(engine, bob, "email", at=NOW - timedelta(days=365))
    # Ana answers "not me" (the first email's unsubscribe link) before the reminder goes.
    withdraw(engine, ana, "email", at=NOW + timedelta(seconds=1))
    confirm, reminder, again, unaddressed, marketing = (i or 0 for i in queue(
        engine,
        request(tenant, juan, "doi:juan", NOW),
        request(tenant, ana, "doi:ana:reminder", NOW),
        request(tenant, bob, "doi:bob", NOW),
        request(tenant, no_email, "doi:none", NOW),
        # Marketing to Juan, who gave no consent: suppressed at send time.
        outgoing(tenant, juan, "welcome:juan", channel=EMAIL),
    ))

    assert worker.run_once(NOW + timedelta(seconds=2)) == 5

    assert message(engine, confirm).status == MessageStatus.SENT
    assert message(engine, confirm).transactional
    assert message(engine, again).status == MessageStatus.SENT
    received = relay.wait_for(2)
    assert sorted(mail.recipients for mail in received) == [
        ("bob@example.net",), ("juan@example.net",),
    ]
    mail = next(mail for mail in received if mail.recipients == ("juan@example.net",))
    # The one-click unsubscribe stays: whoever did not sign up stops the reminders with it.
    assert mail.message["List-Unsubscribe"] == f"<{BASE_URL}/u/{token_for('doi:juan')}>"
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (message(engine, reminder).status, message(engine, reminder).error_code) == (
        MessageStatus.SUPPRESSED, "refused",
    )
    assert (message(engine, unaddressed).status, message(engine, unaddressed).error_code) == (
        MessageStatus.FAILED, "no_address",
    )
    assert (message(engine, marketing).status, message(engine, marketing).error_code) == (
        MessageStatus.SUPPRESSED, "no_consent",
    )
    assert all(not attempts(engine, m) for m in (reminder, unaddressed, marketing))


def test_marketing_consent_withdrawn_after_the_decision_is_suppressed_at_send_time(
    engine: Engine, tenant: str, worker: DeliveryWorker, relay: SmtpSandbox
) -> None:
    juan = new_customer(engine, tenant, consent=("email",), email="j@example.net")
    kept = new_customer(engine, tenant, consent=("email",), email="k@example.net")
    withdrawn, sent = (i or 0 for i in queue(
        engine, outgoing(tenant, juan, "w:1", channel=EMAIL),
        outgoing(tenant, kept, "w:2", channel=EMAIL),
    ))
    withdraw(engine, juan, "email", at=NOW + timedelta(minutes=1))

    assert worker.run_once(NOW + timedelta(minutes=2)) == 2

    assert message(engine, withdrawn).status == MessageStatus.SUPPRESSED
    assert message(engine, withdrawn).error_code == "no_consent"
    assert message(engine, sent).status == MessageStatus.SENT
    assert [mail.recipients for mail in relay.wait_for(1)] == [("k@example.net",)]


def test_a_visit_greeting_needs_location_consent_at_send_time(
    engine: Engine, tenant: str, worker: DeliveryWorker, relay: SmtpSandbox
) -> None:
    both = ("email", "location_marketing")
    juan = new_customer(engine, tenant, consent=both, email="j@example.net")
    ana = new_customer(engine, tenant, consent=both, email="a@example.net")
    bob = new_customer(engine, tenant, consent=("email",), email="b@example.net")
    greeted, withdrawn, never, by_email = (i or 0 for i in queue(
        engine,
        outgoing(tenant, juan, "hello:juan", channel=EMAIL, location_based=True),
        outgoing(tenant, ana, "hello:ana", channel=EMAIL, location_based=True),
        outgoing(tenant, bob, "hello:bob", channel=EMAIL, location_based=True),
        # Not started by a visit: email consent is enough.
        outgoing(tenant, bob, "news:bob", channel=EMAIL),
    ))
    # Ana switches location marketing off while her greeting is held (quiet hours).
    withdraw(engine, ana, "location_marketing", at=NOW + timedelta(minutes=1))

    assert worker.run_once(NOW + timedelta(minutes=2)) == 4

    assert message(engine, greeted).status == MessageStatus.SENT
    assert message(engine, by_email).status == MessageStatus.SENT
    for refused in (withdrawn, never):
        assert (message(engine, refused).status, message(engine, refused).error_code) == (
            MessageStatus.SUPPRESSED, "no_location_consent",
        )
    assert sorted(mail.recipients for mail in relay.wait_for(2)) == [
        ("b@example.net",), ("j@example.net",),
    ]


def test_every_try_of_a_send_is_on_the_record_and_the_send_ends_by_half_the_lease(
    engine: Engine, migrated_url: str, tenant: str
) -> None:
    """A sender that retried inside its call hands back every try; each becomes an
    attempt of the claim, with its own time on the wire. And the worker gave the send a
    deadline: no request may start once the claim could have lapsed."""
    juan = new_customer(engine, tenant, consent=("email",), email="j@example.net")
    [sent] = queue(engine, outgoing(tenant, juan, "tries:1", channel=EMAIL))
    deadlines: list[float] = []

    def deliver(payloads: Sequence[object]) -> list[SendResult]:
        deadlines.append(send_deadline() - time.monotonic())
        first = SendResult(token="j", ok=False, error_code="DEADLINE_EXCEEDED", latency_ms=900)
        second = SendResult(token="j", ok=False, error_code=NOT_SENT, latency_ms=0)
        return [SendResult(token="j", ok=True, provider_message_id="<m1>", latency_ms=40,
                           earlier=(first, second)) for _ in payloads]

    settings = queue_settings(tenant=tenant, database_url=migrated_url)
    worker = DeliveryWorker(engine=engine, settings=settings,
                            senders=ChannelSenders({EMAIL: DeploymentSender(deliver)}))
    assert worker.run_once(NOW) == 1

    assert message(engine, sent or 0).status == MessageStatus.SENT
    record = [(a.attempt, a.outcome, a.error_code, a.latency_ms)
              for a in attempts(engine, sent or 0)]
    assert record == [
        (1, AttemptOutcome.TRANSIENT, "DEADLINE_EXCEEDED", 900),
        (1, AttemptOutcome.TRANSIENT, NOT_SENT, 0),
        (1, AttemptOutcome.SENT, None, 40),
    ]
    [left] = deadlines
    assert LEASE.total_seconds() / 2 - 5 < left <= LEASE.total_seconds() / 2


def test_email_with_a_public_base_url_that_is_not_https_is_refused_at_start(
    engine: Engine, migrated_url: str, tenant: str, relay: SmtpSandbox
) -> None:
    insecure = cloud_settings(tenant=tenant, database_url=migrated_url,
                              tracking={"public_base_url": "http://t.shop.example"})
    email = ChannelSenders({"email": DeploymentSender(EmailSender(smtp_settings(relay)).deliver)})
    with pytest.raises(ValueError, match="public_base_url is not https"):
        DeliveryWorker(engine=engine, settings=insecure, senders=email)
    # Without email the same settings serve the other channels.
    assert DeliveryWorker(engine=engine, settings=insecure, senders=ChannelSenders())


def test_an_email_without_an_unsubscribe_link_fails_once_and_is_logged(
    engine: Engine, tenant: str, worker: DeliveryWorker, relay: SmtpSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    juan = new_customer(engine, tenant, consent=("email",), email="j@example.net")
    [stored] = queue(engine, outgoing(tenant, juan, "legacy", channel=EMAIL))
    with session_scope(engine) as session:  # a row from before messages had tokens
        session.execute(update(Message).where(col(Message.id) == stored)
                        .values(tracking_token=None))
        session.commit()

    with caplog.at_level(logging.ERROR, logger="cloud.delivery.worker"):
        assert worker.run_once(NOW) == 1
    assert worker.run_once(NOW + timedelta(days=1)) == 0  # failed for good, not retried

    row = message(engine, stored or 0)
    assert (row.status, row.error_code, row.attempts) == (
        MessageStatus.FAILED, "no_unsubscribe_link", 1,
    )
    assert f"message {stored} cannot be sent: no_unsubscribe_link" in caplog.text
    assert relay.received.snapshot() == []


def test_the_loop_posts_webhooks_beside_messages_and_a_hanging_shop_delays_no_email(
    engine: Engine, migrated_url: str, tenant: str, relay: SmtpSandbox
) -> None:
    smtp = smtp_settings(relay)
    settings = cloud_settings(
        tenant=tenant, database_url=migrated_url, webhook_secrets=["whsec-loop-0123"],
        tracking={"public_base_url": BASE_URL, "secret": "test-tracking-secret"},
        # Only a wake makes a round happen before the test is over.
        delivery={"poll_interval_s": 60}, channels={"email": smtp.model_dump()},
        scenarios={"webhook_timeout_s": 20},  # the POST hangs until the test lets it answer
        outbound={"allow": ["127.0.0.1/32"]},  # the shop's endpoint is on this machine
    )
    worker = DeliveryWorker(
        engine=engine, settings=settings, now=lambda: NOW,
        senders=email_only(smtp),
    )
    juan = new_customer(engine, tenant, consent=("email",), email="j@example.net")
    with ShopEndpoint() as shop:
        shop.hanging.add("/slow")
        with session_scope(engine) as session:
            queue_webhook(session, tenant=tenant, customer_id=juan, journey_id=1, step="hook",
                          url=shop.url("/slow"), body={"type": "scenario.step"}, now=NOW)
            session.commit()

        async def scenario() -> None:
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop))
            try:
                # The first webhook round posts the webhook; the shop does not answer...
                assert await asyncio.to_thread(shop.wait_for, 1)
                # ...and an email queued now still goes out at once when woken.
                queue(engine, outgoing(tenant, juan, "while-hanging", channel=EMAIL))
                worker.wake()
                assert await asyncio.to_thread(relay.wait_for, 1)
                shop.release.set()
                for _ in range(200):  # the webhook round records its outcome
                    if webhook_status(engine) is WebhookStatus.SENT:
                        break
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await asyncio.wait_for(running, timeout=30)

        asyncio.run(scenario())
    assert webhook_status(engine) is WebhookStatus.SENT
    signature = shop.received[0].headers["x-vitrina-signature"]
    assert signature.startswith("v1=")


def webhook_status(engine: Engine) -> WebhookStatus:
    with session_scope(engine) as session:
        [row] = session.exec(select(OutboundWebhook)).all()
        return WebhookStatus(row.status)
