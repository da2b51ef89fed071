"""`cloud.wakeups` on a real, migrated PostgreSQL: inserting work wakes the listeners of
its channel when the transaction commits (never before, never after a rollback), only
on that channel; a listener whose connection was cut listens again."""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from cloud.db import make_engine, migrate, session_scope
from cloud.messages.queue import enqueue
from cloud.triggers import TriggerKind, record_trigger
from cloud.wakeups import APPLICATION_NAME, RECONNECT_PAUSE_S, Channel, Listener
from cloud.webhooks.outbound import queue_webhook
from tests.cloud.delivery.queue_helpers import new_customer, outgoing
from tests.support.postgres import fresh_database

#: Long enough for a notification that was going to arrive to have arrived.
QUIET_S = 0.3
WAIT_S = 5.0
TENANT = "wakeups"
#: The migration that makes the tables announce what is inserted into them.
announcing = importlib.import_module("cloud.migrations.versions.0014_announce_new_work")
NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres() -> Iterator[tuple[str, Engine]]:
    with fresh_database("vitrina_wakeups") as url:
        migrate(url)
        engine = make_engine(url)
        yield url, engine
        engine.dispose()


@pytest.fixture
def woken() -> dict[Channel, threading.Event]:
    return {channel: threading.Event() for channel in Channel}


def listener(url: str, woken: dict[Channel, threading.Event]) -> Listener:
    return Listener(url, {channel: event.set for channel, event in woken.items()})


def listened(listening: Listener, woken: dict[Channel, threading.Event]) -> None:
    """Wait until `listening` listens, and forget its catch-up call on connecting."""
    assert listening.wait_listening(RECONNECT_PAUSE_S + WAIT_S)
    for wake in woken.values():
        assert wake.is_set()
        wake.clear()


def a_trigger(customer_id: int) -> Callable[[Session], object]:
    key = f"t:{time.monotonic_ns()}"
    return lambda session: record_trigger(
        session, tenant=TENANT, customer_id=customer_id, kind=TriggerKind.PRESENCE_ENTER,
        occurred_at=NOW, source_key=key, now=NOW,
    )


def a_message(customer_id: int) -> Callable[[Session], object]:
    key = f"m:{time.monotonic_ns()}"
    return lambda session: enqueue(session, outgoing=outgoing(TENANT, customer_id, key), now=NOW)


def a_webhook(customer_id: int) -> Callable[[Session], object]:
    step = f"w{time.monotonic_ns()}"
    return lambda session: queue_webhook(
        session, tenant=TENANT, customer_id=customer_id, journey_id=1, step=step,
        url="https://shop.example/hook", body={"event": "test"}, now=NOW,
    )


@pytest.mark.parametrize(("insert", "channel"), [
    (a_trigger, Channel.TRIGGERS), (a_message, Channel.QUEUED), (a_webhook, Channel.QUEUED),
])
def test_inserted_work_wakes_its_channel_at_commit(
    postgres: tuple[str, Engine], woken: dict[Channel, threading.Event],
    insert: Callable[[int], Callable[[Session], object]], channel: Channel,
) -> None:
    url, engine = postgres
    customer_id = new_customer(engine, TENANT)
    with listener(url, woken) as listening:
        listened(listening, woken)
        with session_scope(engine) as session:
            assert insert(customer_id)(session) is not None
            time.sleep(QUIET_S)
            assert not woken[channel].is_set()  # not before the commit
            session.commit()
        assert woken[channel].wait(WAIT_S)
        assert not any(event.is_set() for other, event in woken.items() if other != channel)


def test_rolled_back_work_wakes_nobody(
    postgres: tuple[str, Engine], woken: dict[Channel, threading.Event]
) -> None:
    url, engine = postgres
    customer_id = new_customer(engine, TENANT)
    with listener(url, woken) as listening:
        listened(listening, woken)
        with session_scope(engine) as session:
            a_message(customer_id)(session)
            a_trigger(customer_id)(session)
            session.rollback()
        time.sleep(QUIET_S)
        assert not any(event.is_set() for event in woken.values())


def test_the_migration_announces_on_the_channels_listeners_listen_to() -> None:
    assert set(announcing.ANNOUNCED.values()) == {channel.value for channel in Channel}


def test_a_listener_whose_connection_was_cut_listens_again(
    postgres: tuple[str, Engine], woken: dict[Channel, threading.Event]
) -> None:
    url, engine = postgres
    with listener(url, woken) as listening:
        listened(listening, woken)
        with engine.connect() as connection:
            cut = connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ), {"name": APPLICATION_NAME}).scalars().all()
        assert cut == [True]
        deadline = time.monotonic() + RECONNECT_PAUSE_S + WAIT_S
        while listening.wait_listening(0) and time.monotonic() < deadline:
            time.sleep(0.05)  # until it noticed
        listened(listening, woken)
        with session_scope(engine) as session:
            a_message(new_customer(engine, TENANT))(session)
            session.commit()
        assert woken[Channel.QUEUED].wait(WAIT_S)
