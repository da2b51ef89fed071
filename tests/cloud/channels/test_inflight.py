"""The in-flight limiter (cloud.channels.inflight): how the limit grows and shrinks, on a
made-up clock, and how requests wait for a slot (or are not sent), on the real one."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cloud.channels.inflight import (
    InflightLimiter,
    LimitSettings,
    NotSentError,
    Permit,
    Signal,
    host_key,
    send_deadline,
    sending_until,
)

HOST = "https://push.example:443"
#: Latency past 2 x baseline + 50 ms is slow; the ceiling keeps out of the way here.
SETTINGS = LimitSettings(initial=2, maximum=6, ceiling_s=5.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> InflightLimiter:
    return InflightLimiter(SETTINGS, clock=clock)


def fill(limiter: InflightLimiter) -> list[Permit]:
    """Every permit to be had now."""
    permits = []
    while (permit := limiter.try_acquire(HOST, behind=100)) is not None:
        permits.append(permit)
    return permits


def answer(limiter: InflightLimiter, permit: Permit, latency_s: float = 0.1) -> None:
    limiter.release(permit, Signal.ANSWER, latency_s=latency_s)


def test_the_limit_grows_by_one_per_round_trip_while_answers_come_in_time(
    limiter: InflightLimiter, clock: Clock
) -> None:
    limits = []
    for _ in range(6):
        flight = fill(limiter)
        limits.append(len(flight))
        clock.now += 0.1
        for permit in flight:
            answer(limiter, permit)

    # Only the request that filled the limit (the probe) grows it: once per round trip.
    assert limits == [2, 3, 4, 5, 6, 6]  # up to the maximum, not past it


def test_an_unused_limit_does_not_grow(limiter: InflightLimiter, clock: Clock) -> None:
    for _ in range(5):
        permit = limiter.try_acquire(HOST)
        assert permit is not None
        clock.now += 0.1
        answer(limiter, permit)

    assert limiter.limit(HOST) == 2  # one request at a time never filled two slots


def test_overload_halves_the_limit_once_per_round_trip(
    limiter: InflightLimiter, clock: Clock
) -> None:
    for _ in range(4):  # up to 6
        flight = fill(limiter)
        clock.now += 0.1
        for permit in flight:
            answer(limiter, permit)
    flight = fill(limiter)
    assert len(flight) == 6

    # Every request of the flight times out: one back-off, not six.
    for permit in flight:
        limiter.release(permit, Signal.OVERLOAD)
    assert limiter.limit(HOST) == 3

    # A request started after it times out too: that is news, and halves again.
    [*again] = fill(limiter)
    limiter.release(again[0], Signal.OVERLOAD)
    assert limiter.limit(HOST) == 1


def test_slow_answers_shrink_the_limit_a_little_and_late_ones_a_lot(clock: Clock) -> None:
    limiter = InflightLimiter(LimitSettings(initial=10, maximum=10, ceiling_s=2.0), clock=clock)
    first = fill(limiter)
    clock.now += 0.1
    answer(limiter, first[0])  # the baseline: 100 ms
    answer(limiter, first[1], latency_s=0.4)  # past 2 x 100 + 50 ms: slow
    assert limiter.limit(HOST) == 9
    answer(limiter, first[2], latency_s=0.4)  # the same flight: no second back-off
    assert limiter.limit(HOST) == 9

    for permit in first[3:]:
        answer(limiter, permit)
    later = fill(limiter)
    answer(limiter, later[0], latency_s=2.5)  # past the ceiling: as bad as a time-out
    assert limiter.limit(HOST) == 4


def test_a_stuck_request_stops_growth_gives_its_slot_back_and_a_connection_is_closed(
    clock: Clock,
) -> None:
    limiter = InflightLimiter(LimitSettings(initial=4, maximum=10, ceiling_s=5.0), clock=clock)
    *served, stuck = fill(limiter)  # the last went out on a connection the host never took
    for _ in range(2):  # the others are answered in 100 ms, and go out again
        clock.now += 0.1
        for permit in served:
            answer(limiter, permit)
        served = fill(limiter)
        assert len(served) == 3  # the probe (the stuck one) never came back: no growth
        assert not any(p.close_connection for p in served)  # nothing is late yet

    clock.now += 0.1  # 300 ms: past 2 x 100 + 50 ms, the fourth is stuck
    for permit in served:
        answer(limiter, permit)
    # Backed off to what the host serves (three), the stuck one among them: two may go out
    # again, the first giving its connection back, so that the host takes the stuck one
    # in (one connection per stuck request).
    assert limiter.limit(HOST) == 3
    served = fill(limiter)
    assert [p.close_connection for p in served] == [True, False]

    clock.now += 0.1
    answer(limiter, served[1])  # answered in time, but a request is stuck: no growth
    assert limiter.limit(HOST) == 3
    limiter.release(stuck, Signal.ANSWER, latency_s=0.45)  # in at last (already backed off)
    answer(limiter, served[0])
    assert limiter.limit(HOST) == 3
    for _ in range(2):
        flight = fill(limiter)
        clock.now += 0.1
        for permit in flight:
            answer(limiter, permit)
    assert limiter.limit(HOST) == 5  # growing again, one per round trip


def test_one_more_request_may_go_to_give_a_connection_back(
    limiter: InflightLimiter, clock: Clock
) -> None:
    first, stuck = fill(limiter)
    for _ in range(2):
        clock.now += 0.1
        answer(limiter, first)
        [first] = fill(limiter)
    clock.now += 0.1
    answer(limiter, first)  # the other has waited 300 ms: stuck

    assert limiter.limit(HOST) == 1  # what the host serves
    [extra] = fill(limiter)  # over the limit, to close its connection after the answer
    assert extra.close_connection
    assert limiter.in_flight(HOST) == 2
    answer(limiter, stuck, latency_s=0.35)
    answer(limiter, extra)
    assert limiter.in_flight(HOST) == 0


def test_retry_after_holds_the_host_and_a_long_hold_is_not_waited_for(
    limiter: InflightLimiter, clock: Clock
) -> None:
    [permit, other] = fill(limiter)
    limiter.release(permit, Signal.OVERLOAD, retry_after_s=5)
    answer(limiter, other)

    assert limiter.held_for(HOST) == 5
    assert limiter.try_acquire(HOST) is None
    clock.now += 5
    after = limiter.try_acquire(HOST)
    assert after is not None

    clock.now += 0.1
    limiter.release(after, Signal.OVERLOAD, retry_after_s=3600)
    assert limiter.held_for(HOST) == pytest.approx(SETTINGS.max_hold_s)  # capped
    with pytest.raises(NotSentError) as refused:  # longer than hold_wait_s: not waited for
        limiter.acquire_blocking(HOST, deadline=clock.now + 600)
    assert refused.value.retry_after_s == pytest.approx(SETTINGS.max_hold_s)


def test_waiting_threads_get_slots_in_turn_and_give_up_at_the_deadline() -> None:
    limiter = InflightLimiter(LimitSettings(initial=1, maximum=1))
    first = limiter.acquire_blocking(HOST, deadline=time.monotonic() + 5)
    order: list[int] = []

    def wait(n: int) -> None:
        permit = limiter.acquire_blocking(HOST, deadline=time.monotonic() + 5)
        order.append(n)
        limiter.release(permit, Signal.ANSWER, latency_s=0.01)

    threads = [threading.Thread(target=wait, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # queued in this order
    limiter.release(first, Signal.ANSWER, latency_s=0.01)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2]

    assert limiter.in_flight(HOST) == 0

    fresh = InflightLimiter(LimitSettings(initial=1, maximum=1))
    held = fresh.acquire_blocking(HOST, deadline=time.monotonic() + 5)
    started = time.monotonic()
    with pytest.raises(NotSentError):
        fresh.acquire_blocking(HOST, deadline=started + 0.1)
    assert 0.08 < time.monotonic() - started < 1
    fresh.release(held, Signal.NONE)


def test_waiting_tasks_get_slots_in_turn_and_a_cancelled_one_gives_its_back() -> None:
    async def scenario() -> None:
        limiter = InflightLimiter(LimitSettings(initial=2, maximum=2))
        deadline = time.monotonic() + 5
        held = [await limiter.acquire(HOST, deadline=deadline) for _ in range(2)]
        order: list[int] = []

        async def wait(n: int) -> None:
            permit = await limiter.acquire(HOST, deadline=deadline)
            order.append(n)
            await asyncio.sleep(0.01)
            limiter.release(permit, Signal.NONE)

        waiting = [asyncio.create_task(wait(n)) for n in range(4)]
        await asyncio.sleep(0.01)
        waiting[1].cancel()  # a send that was cancelled while it waited
        for permit in held:
            limiter.release(permit, Signal.NONE)
        await asyncio.gather(*waiting, return_exceptions=True)
        assert order == [0, 2, 3]
        assert limiter.in_flight(HOST) == 0

        # With the host held past the deadline, nobody waits at all.
        permit = await limiter.acquire(HOST, deadline=deadline)
        limiter.release(permit, Signal.OVERLOAD, retry_after_s=10)
        with pytest.raises(NotSentError):
            await limiter.acquire(HOST, deadline=time.monotonic() + 1)

    asyncio.run(scenario())


def test_a_send_deadline_is_the_callers_or_the_budget() -> None:
    assert send_deadline(30) == pytest.approx(time.monotonic() + 30, abs=1)
    with sending_until(123.0):
        assert send_deadline(30) == 123.0
    assert host_key("https://Push.Example:443/wpush/v2/abc?x=1") == HOST
