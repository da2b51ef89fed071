"""`cloud.wakeups` on a real PostgreSQL: an announcement reaches a listener when its
transaction commits (never before, never after a rollback), only on its own channel; a
listener whose connection was cut listens again; SQLite announces nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text
from sqlmodel import Session

from cloud.db import make_engine
from cloud.wakeups import APPLICATION_NAME, RECONNECT_PAUSE_S, Channel, Listener, announce
from tests.support.postgres import fresh_database

#: Long enough for a notification that was going to arrive to have arrived.
QUIET_S = 0.3
WAIT_S = 5.0


@pytest.fixture
def postgres() -> Iterator[tuple[str, Engine]]:
    with fresh_database("vitrina_wakeups") as url:
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


def commit_announcement(engine: Engine, channel: Channel) -> None:
    with Session(engine) as session:
        announce(session, channel)
        session.commit()


def test_an_announcement_wakes_its_channel_at_commit(
    postgres: tuple[str, Engine], woken: dict[Channel, threading.Event]
) -> None:
    url, engine = postgres
    with listener(url, woken) as listening:
        listened(listening, woken)
        with Session(engine) as session:
            announce(session, Channel.TRIGGERS)
            time.sleep(QUIET_S)
            assert not woken[Channel.TRIGGERS].is_set()  # not before the commit
            session.commit()
        assert woken[Channel.TRIGGERS].wait(WAIT_S)
        assert not woken[Channel.QUEUED].is_set()


def test_a_rolled_back_announcement_wakes_nobody(
    postgres: tuple[str, Engine], woken: dict[Channel, threading.Event]
) -> None:
    url, engine = postgres
    with listener(url, woken) as listening:
        listened(listening, woken)
        with Session(engine) as session:
            announce(session, Channel.QUEUED)
            session.rollback()
        time.sleep(QUIET_S)
        assert not any(event.is_set() for event in woken.values())


def test_a_listener_whose_connection_was_cut_listens_again(
    postgres: tuple[str, Engine], woken: dict[Channel, threading.Event]
) -> None:
    url, engine = postgres
    with listener(url, woken) as listening:
        listened(listening, woken)
        with engine.connect() as connection:
            cut = connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name"
            ), {"name": APPLICATION_NAME}).scalars().all()
        assert cut == [True]
        deadline = time.monotonic() + RECONNECT_PAUSE_S + WAIT_S
        while listening.wait_listening(0) and time.monotonic() < deadline:
            time.sleep(0.05)  # until it noticed
        listened(listening, woken)
        commit_announcement(engine, Channel.QUEUED)
        assert woken[Channel.QUEUED].wait(WAIT_S)


def test_sqlite_announces_nothing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'vitrina.db'}")
    statements: list[str] = []
    with Session(engine) as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute",
                     lambda *args: statements.append(args[2]))
        announce(session, Channel.TRIGGERS)
        session.commit()
    engine.dispose()
    assert statements == []
