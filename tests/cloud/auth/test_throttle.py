"""Slowing down password guessing: free failures, a doubling wait, a cap, and a count
forgotten only after a quiet window."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from cloud.auth import throttle
from cloud.db import session_scope

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LIMITS = throttle.Throttle(free=3, window=timedelta(minutes=15),
                           base=timedelta(seconds=30), cap=timedelta(minutes=4))


class NeverPrune(random.Random):
    """Failures that never prune on their own: the tests call `prune` when they mean it."""

    def randrange(self, *_args: object, **_kwargs: object) -> int:
        return 1


def fail(engine: Engine, subjects: list[str], at: datetime) -> timedelta | None:
    with session_scope(engine) as session:
        throttle.record_failure(session, subjects=subjects, now=at, throttle=LIMITS,
                                rng=NeverPrune())
        session.commit()
        return throttle.blocked_for(session, subjects=subjects, now=at)


def test_free_failures_then_a_wait_that_doubles_up_to_the_cap(engine: Engine) -> None:
    subjects = [throttle.subject("account", "ana@shop.example")]
    at = NOW
    waits = []
    for _ in range(8):
        waits.append(fail(engine, subjects, at))
        at += waits[-1] or timedelta(seconds=1)
    assert waits == [None, None, None, *(timedelta(seconds=s) for s in (30, 60, 120, 240, 240))]


def test_the_count_is_forgotten_after_a_quiet_window_once_the_block_is_over(
    engine: Engine,
) -> None:
    subjects = [throttle.subject("client", "203.0.113.9")]
    for _ in range(4):
        blocked = fail(engine, subjects, NOW)
    assert blocked == timedelta(seconds=30)
    # Waiting out the block alone is not quiet enough: the next failure waits longer.
    assert fail(engine, subjects, NOW + timedelta(minutes=14)) == timedelta(seconds=60)
    later = NOW + timedelta(minutes=14, seconds=60) + LIMITS.window + timedelta(seconds=1)
    assert fail(engine, subjects, later) is None


def test_blocked_for_names_the_longest_block_and_clear_ends_one(engine: Engine) -> None:
    account = throttle.subject("account", "Ana@Shop.example")
    client = throttle.subject("client", "203.0.113.9")
    assert account == throttle.subject("account", "ana@shop.example")
    for _ in range(5):
        fail(engine, [account], NOW)
    fail(engine, [client], NOW)
    with session_scope(engine) as session:
        assert throttle.blocked_for(session, subjects=[client, account], now=NOW) == (
            timedelta(seconds=60))
        throttle.clear(session, subject_key=account)
        session.commit()
        assert throttle.blocked_for(session, subjects=[client, account], now=NOW) is None


def test_the_table_lists_no_address(engine: Engine) -> None:
    fail(engine, [throttle.subject("account", "ana@shop.example")], NOW)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM login_failure")).all()
    assert len(rows) == 1
    assert "ana" not in repr(rows)


def test_failures_counted_at_once_by_several_processes_are_all_counted(engine: Engine) -> None:
    """Each failure is one atomic upsert: API processes (threads with their own
    connections here) counting one subject at the same moment lose no count."""
    subjects = [throttle.subject("api-key", "0123456789ab")]
    start = threading.Barrier(4)

    def count_five() -> None:
        start.wait()
        for _ in range(5):
            fail(engine, subjects, NOW)

    workers = [threading.Thread(target=count_five) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT failures FROM login_failure")).scalar() == 20
    with session_scope(engine) as session:  # the 20th failure's wait: capped
        assert throttle.blocked_for(session, subjects=subjects, now=NOW) == LIMITS.cap


def test_rows_no_throttle_counts_any_more_are_pruned(engine: Engine) -> None:
    old, blocked, recent = (throttle.subject("client", f"203.0.113.{n}") for n in (1, 2, 3))
    fail(engine, [old], NOW - timedelta(days=2))
    for _ in range(10):  # blocked until after the cutoff: still counted
        fail(engine, [blocked], NOW - timedelta(days=1, minutes=2))
    fail(engine, [recent], NOW)
    with session_scope(engine) as session:
        assert throttle.prune(session, now=NOW) == 1
        session.commit()
    with engine.connect() as connection:
        left = connection.execute(text("SELECT subject FROM login_failure")).scalars().all()
    assert sorted(left) == sorted([blocked, recent])
