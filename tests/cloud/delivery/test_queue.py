"""The durable send queue against a real local FCM server, on SQLite and PostgreSQL:
queued once, held until due, sent once, retried durably, expired, suppressed, resumed
after a killed worker, and never sent twice by two workers."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, text

from cloud.channels import DeploymentSender
from cloud.channels.dedupe import collapse_id
from cloud.channels.fcm import FcmSender, FcmSettings, PushMessage
from cloud.channels.results import SendResult
from cloud.channels.retry import NO_RETRY
from cloud.customers.models import Customer
from cloud.db import session_scope, worker_engine
from cloud.delivery.senders import ChannelSenders
from cloud.delivery.worker import DeliveryWorker
from cloud.erasure import erase_customer
from cloud.messages.models import AttemptOutcome, MessageStatus
from cloud.messages.queue import LEASE, MessageBatch, claim_due
from cloud.metrics import REGISTRY
from sandbox.fcm import FcmSandbox, Outcome, ServiceAccount, make_token
from tests.cloud.conftest import FCM_PROJECT
from tests.cloud.delivery.queue_helpers import (
    BASE_URL,
    NOW,
    attempts,
    device,
    message,
    new_customer,
    outgoing,
    queue,
    queue_settings,
    race,
    token_for,
    withdraw,
)
from tests.cloud.factories import CLOCKLESS_LIMITS


@pytest.fixture
def fcm(fcm_settings: FcmSettings) -> Iterator[FcmSender]:
    """A real FCM sender without in-call retries: the queue's own retries are under test."""
    with FcmSender(fcm_settings, retry=NO_RETRY, limits=CLOCKLESS_LIMITS) as sender:
        yield sender


def make_worker(
    engine: Engine, migrated_url: str, tenant: str, sender: FcmSender, *, batch_size: int = 50
) -> DeliveryWorker:
    settings = queue_settings(tenant=tenant, database_url=migrated_url, batch_size=batch_size)
    return DeliveryWorker(
        engine=engine, senders=ChannelSenders({"push": DeploymentSender(sender.send)}),
        settings=settings,
        rng=random.Random(7),
    )


@pytest.fixture
def worker(engine: Engine, migrated_url: str, tenant: str, fcm: FcmSender) -> DeliveryWorker:
    return make_worker(engine, migrated_url, tenant, fcm)


def test_a_message_is_queued_once_held_until_due_and_sent_once_with_tracking(
    engine: Engine, tenant: str, worker: DeliveryWorker, fcm_server: FcmSandbox
) -> None:
    token = make_token("juan")
    customer = new_customer(engine, tenant, fcm_tokens=[token])
    later = NOW + timedelta(hours=9)  # quiet hours: held until the morning
    first, again = queue(
        engine, outgoing(tenant, customer, "j1:push", not_before=later),
        outgoing(tenant, customer, "j1:push", not_before=later),
    )

    assert first is not None
    assert again is None  # the same decision replayed queues nothing
    assert message(engine, first).status == MessageStatus.HELD
    assert worker.run_once(NOW) == 0
    assert worker.run_once(later) == 1
    assert worker.run_once(later + timedelta(hours=1)) == 0

    sent = message(engine, first)
    assert sent.status == MessageStatus.SENT
    assert sent.sent_at == later
    assert sent.delivered_at is None  # FCM gives no delivery receipt
    assert sent.provider_message_id
    [push] = fcm_server.wait_for(1)
    assert push.token == token
    assert push.message["notification"]["title"] == "20% off the dryer"
    data = push.message["data"]
    assert data["message_id"] == str(first)
    assert data["open_url"] == f"{BASE_URL}/o/{token_for('j1:push')}"
    assert data["deep_link"] == f"{BASE_URL}/c/{token_for('j1:push')}"
    assert push.message["android"]["notification"]["tag"] == collapse_id("j1:push")
    [attempt] = attempts(engine, first)
    assert (attempt.provider, attempt.outcome, attempt.attempt) == ("fcm", AttemptOutcome.SENT, 1)
    assert attempt.latency_ms >= 0
    assert attempt.provider_message_id == sent.provider_message_id


def test_failures_are_settled_dead_tokens_deactivated_and_nothing_sent_without_cause(
    engine: Engine, tenant: str, worker: DeliveryWorker, fcm_server: FcmSandbox
) -> None:
    alive, dead, mismatched, refused = (make_token(label) for label in ("a", "d", "m", "r"))
    fcm_server.script(dead, Outcome.UNREGISTERED, then=Outcome.UNREGISTERED)
    fcm_server.script(mismatched, Outcome.SENDER_ID_MISMATCH, then=Outcome.SENDER_ID_MISMATCH)
    fcm_server.script(refused, Outcome.INVALID_ARGUMENT, then=Outcome.INVALID_ARGUMENT)
    two_phones = new_customer(engine, tenant, fcm_tokens=[alive, dead])
    gone = new_customer(engine, tenant, fcm_tokens=[mismatched])
    bad = new_customer(engine, tenant, fcm_tokens=[refused])
    ana = new_customer(engine, tenant, fcm_tokens=[make_token("ana")])
    no_phone = new_customer(engine, tenant)
    ids = queue(
        engine, outgoing(tenant, two_phones, "k:1"), outgoing(tenant, gone, "k:2"),
        outgoing(tenant, bad, "k:3"),
        outgoing(tenant, two_phones, "late", not_before=NOW + timedelta(hours=9),
                 expires_at=NOW + timedelta(hours=1)),
        outgoing(tenant, ana, "withdrawn"),
        outgoing(tenant, no_phone, "no-phone"),
        # Never consented to web push: suppressed before any address is looked at.
        outgoing(tenant, two_phones, "web", channel="web_push"),
    )
    reached, unreachable, invalid, late, withdrawn, unaddressable, web = (i or 0 for i in ids)
    withdraw(engine, ana, "push", at=NOW + timedelta(seconds=1))

    assert worker.run_once(NOW + timedelta(seconds=2)) == 6
    assert worker.run_once(NOW + timedelta(hours=9)) == 0  # `late` expired meanwhile

    assert message(engine, reached).status == MessageStatus.SENT  # one phone got it
    assert sorted(a.outcome for a in attempts(engine, reached)) == sorted(
        [AttemptOutcome.SENT, AttemptOutcome.DEAD_ADDRESS]
    )
    assert device(engine, alive).active
    assert not device(engine, dead).active
    assert device(engine, dead).deactivation_reason == "fcm: UNREGISTERED"
    assert message(engine, unreachable).status == MessageStatus.FAILED
    assert message(engine, unreachable).error_code == "SENDER_ID_MISMATCH"
    assert not device(engine, mismatched).active
    assert message(engine, invalid).status == MessageStatus.FAILED
    assert message(engine, invalid).error_code == "INVALID_ARGUMENT"
    assert device(engine, refused).active  # a bad message says nothing about the token
    assert message(engine, late).status == MessageStatus.EXPIRED
    assert message(engine, withdrawn).status == MessageStatus.SUPPRESSED
    assert message(engine, withdrawn).error_code == "no_consent"
    assert message(engine, unaddressable).status == MessageStatus.FAILED
    assert message(engine, unaddressable).error_code == "no_address"
    assert message(engine, web).status == MessageStatus.SUPPRESSED
    assert all(not attempts(engine, m) for m in (late, withdrawn, unaddressable, web))
    assert len(fcm_server.received) == 1
    # Nothing is retried later, and the dead token gets nothing more.
    [after] = queue(engine, outgoing(tenant, gone, "k:4"))
    assert worker.run_once(NOW + timedelta(days=1)) == 1
    assert message(engine, after or 0).error_code == "no_address"
    # Erasing a customer takes their messages' attempts along.
    with session_scope(engine) as session:
        profile = session.get(Customer, two_phones)
        assert profile is not None
        erase_customer(session, customer=profile, now=NOW + timedelta(days=2))
        session.commit()
    assert attempts(engine, reached) == []


def test_transient_failures_back_off_in_the_table_until_the_provider_is_back(
    engine: Engine, tenant: str, worker: DeliveryWorker, fcm: FcmSender,
    fcm_server: FcmSandbox, fcm_account: ServiceAccount,
) -> None:
    quota, down, juan = make_token("quota"), make_token("down"), make_token("juan")
    fcm_server.script(quota, Outcome.QUOTA_EXCEEDED)
    fcm_server.script(down, Outcome.UNAVAILABLE)
    fcm_server.retry_after_s = 120
    limited, unavailable = queue(
        engine, outgoing(tenant, new_customer(engine, tenant, fcm_tokens=[quota]), "q"),
        outgoing(tenant, new_customer(engine, tenant, fcm_tokens=[down]), "u"),
    )
    assert limited is not None
    assert unavailable is not None

    # 429 and 503: pending, with the next attempt no sooner than Retry-After.
    assert worker.run_once(NOW) == 2
    row = message(engine, limited)
    assert (row.status, row.error_code) == (MessageStatus.PENDING, "QUOTA_EXCEEDED")
    assert row.next_attempt_at == NOW + timedelta(seconds=120)  # not our own 15-30 s
    [attempt] = attempts(engine, limited)
    assert (attempt.outcome, attempt.retry_after_s) == (AttemptOutcome.TRANSIENT, 120)
    assert message(engine, unavailable).error_code == "UNAVAILABLE"
    assert worker.run_once(NOW + timedelta(seconds=119)) == 0
    assert worker.run_once(NOW + timedelta(seconds=120)) == 2
    assert message(engine, limited).status == MessageStatus.SENT
    assert [a.outcome for a in attempts(engine, unavailable)] == [
        AttemptOutcome.TRANSIENT, AttemptOutcome.SENT,
    ]

    # A worker claims a message, sends it and dies before recording anything: after its
    # lease another round sends it again, under the same collapse id (the phone replaces
    # the first copy instead of showing two).
    customer = new_customer(engine, tenant, fcm_tokens=[juan])
    [killed] = queue(engine, outgoing(tenant, customer, "killed"), now=NOW)
    with session_scope(engine) as session:
        assert [claim.message_id for claim in claim_due(session, now=NOW, limit=10)] == [killed]
        session.commit()
    fcm.send([PushMessage(token=juan, title="t", body="b", idempotency_key="killed")])
    later = NOW + timedelta(minutes=3)
    assert worker.run_once(NOW + LEASE - timedelta(seconds=1)) == 0  # still leased
    assert worker.run_once(NOW + LEASE) == 1
    assert message(engine, killed or 0).attempts == 2
    first, resent = fcm_server.received.snapshot()[-2:]
    for push in (first, resent):
        assert push.token == juan
        assert push.message["android"]["notification"]["tag"] == collapse_id("killed")
        assert push.message["apns"]["headers"]["apns-collapse-id"] == collapse_id("killed")

    # The provider goes down: work backs up in the table, not in memory...
    port = urlsplit(fcm_server.url).port
    assert port is not None
    fcm_server.stop()
    backlog = queue(engine, *(outgoing(tenant, customer, f"o:{n}") for n in range(5)), now=later)
    outage = NOW + timedelta(minutes=10)
    assert worker.run_once(outage) == 5
    for message_id in backlog:
        row = message(engine, message_id or 0)
        assert row.status == MessageStatus.PENDING
        assert row.next_attempt_at is not None
        assert outage < row.next_attempt_at <= outage + timedelta(seconds=30)
        assert [a.outcome for a in attempts(engine, message_id or 0)] == [
            AttemptOutcome.TRANSIENT
        ]
    assert worker.run_once(outage + timedelta(seconds=5)) == 0  # backing off, not spinning
    # ...and drains exactly once when it is back.
    with FcmSandbox(FCM_PROJECT, port=port, service_account=fcm_account) as back:
        assert worker.run_once(outage + timedelta(minutes=1)) == 5
        assert worker.run_once(outage + timedelta(hours=1)) == 0
        received = back.wait_for(5)
    assert len(received) == 5
    assert sorted(push.message["data"]["message_id"] for push in received) == sorted(
        str(message_id) for message_id in backlog
    )
    assert all(message(engine, m or 0).status == MessageStatus.SENT for m in backlog)


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_two_workers_claiming_at_once_never_send_a_message_twice(
    engine: Engine, migrated_url: str, tenant: str, fcm: FcmSender, fcm_server: FcmSandbox
) -> None:
    customers = [new_customer(engine, tenant, fcm_tokens=[make_token(f"c{n}")]) for n in range(4)]
    ids = queue(engine, *(
        outgoing(tenant, customers[n % 4], f"race:{n}") for n in range(80)
    ))
    workers = [make_worker(engine, migrated_url, tenant, fcm, batch_size=7) for _ in range(2)]
    claimed = race([lambda: workers[0].run_once(NOW), lambda: workers[1].run_once(NOW)])

    assert sum(claimed) == 80
    assert min(claimed) > 0  # both really worked
    received = fcm_server.wait_for(80)
    assert len(received) == 80
    assert len({push.message["data"]["message_id"] for push in received}) == 80
    for message_id in ids:
        row = message(engine, message_id or 0)
        assert (row.status, row.attempts) == (MessageStatus.SENT, 1)


def test_a_claim_takes_at_most_its_limit_oldest_first_with_the_rows_as_claimed(
    engine: Engine, tenant: str
) -> None:
    customer = new_customer(engine, tenant, fcm_tokens=[make_token("limit")])
    ids = queue(engine, *(outgoing(tenant, customer, f"limit:{n}") for n in range(5)))
    with session_scope(engine) as session:
        first = claim_due(session, now=NOW, limit=3)
        session.commit()
    with session_scope(engine) as session:
        rest = claim_due(session, now=NOW, limit=3)
        session.commit()

    assert [claim.message_id for claim in first] == ids[:3]
    assert [claim.message_id for claim in rest] == ids[3:]
    assert all(row.status == MessageStatus.PENDING and row.attempts == claim.attempt == 1
               for claim, row in [*first.items(), *rest.items()])


class DroppingSender:
    """The real FCM sender; after each send the server ends the worker's connections, as
    a database restart between sending and recording would."""

    def __init__(self, sender: FcmSender, engine: Engine, admin: Engine) -> None:
        self._sender, self._engine, self._admin = sender, engine, admin

    def deliver(self, tenant: str, messages: Sequence[PushMessage]) -> list[SendResult]:
        results = self._sender.send(messages)
        with self._admin.connect() as connection:
            connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ))
            connection.commit()
        return results

    def close(self) -> None:
        """The test closes the FCM sender it handed in."""


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_sends_are_recorded_once_the_database_is_back_and_not_sent_again(
    engine: Engine, migrated_url: str, tenant: str, fcm: FcmSender, fcm_server: FcmSandbox
) -> None:
    customer = new_customer(engine, tenant, fcm_tokens=[make_token("dropped")])
    [queued] = queue(engine, outgoing(tenant, customer, "dropped:1"))
    worker_db = worker_engine(migrated_url)  # a worker's: no ping before a transaction
    settings = queue_settings(tenant=tenant, database_url=migrated_url, batch_size=50)
    worker = DeliveryWorker(
        engine=worker_db,
        senders=ChannelSenders({"push": DroppingSender(fcm, worker_db, engine)}),
        settings=settings,
    )
    retries = REGISTRY.get_sample_value("vitrina_database_retries_total") or 0
    sent = REGISTRY.get_sample_value(
        "vitrina_messages_total", {"channel": "push", "outcome": "sent"}
    ) or 0
    try:
        assert worker.run_once(NOW) == 1
        assert worker.run_once(NOW + LEASE * 2) == 0  # recorded: nothing to send again
    finally:
        worker_db.dispose()

    assert (REGISTRY.get_sample_value("vitrina_database_retries_total") or 0) > retries
    assert REGISTRY.get_sample_value(
        "vitrina_messages_total", {"channel": "push", "outcome": "sent"}
    ) == sent + 1
    assert len(fcm_server.wait_for(1)) == 1
    row = message(engine, queued or 0)
    assert (row.status, row.attempts) == (MessageStatus.SENT, 1)
    assert [a.outcome for a in attempts(engine, queued or 0)] == [AttemptOutcome.SENT]


def test_the_transactional_flag_is_stored_and_carries_no_offer(
    engine: Engine, tenant: str
) -> None:
    customer = new_customer(engine, tenant)
    consent_request, marketing = queue(
        engine, outgoing(tenant, customer, "doi", transactional=True),
        outgoing(tenant, customer, "offer", offer_id=7),
    )
    assert message(engine, consent_request or 0).transactional
    assert not message(engine, marketing or 0).transactional
    # Sent without marketing consent, a transactional message must not carry an offer.
    for offer in ({"offer_id": 7}, {"coupon_id": 3}, {"product_sku": "TD-8KG"}):
        with pytest.raises(ValueError, match="transactional message carries no"):
            queue(engine, outgoing(tenant, customer, "doi:offer", transactional=True, **offer))


def test_a_batch_stores_each_key_once_and_says_which_it_stored(
    engine: Engine, tenant: str
) -> None:
    customer = new_customer(engine, tenant)
    [earlier] = queue(engine, outgoing(tenant, customer, "greeting"))
    batch = MessageBatch()
    again = batch.add(outgoing(tenant, customer, "greeting"), now=NOW)
    first = batch.add(outgoing(tenant, customer, "offer"), now=NOW)
    twice = batch.add(outgoing(tenant, customer, "offer"), now=NOW)
    assert batch.holds_for(customer)
    with session_scope(engine) as session:
        assert batch.write(session) == [again, first, twice]
        session.commit()
    assert not batch.holds_for(customer)
    assert (again.id, twice.id) == (None, None)  # taken before; taken earlier in the batch
    assert first.id is not None
    assert first.id != earlier
    assert message(engine, first.id).idempotency_key == "offer"
