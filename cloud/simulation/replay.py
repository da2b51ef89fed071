"""The virtual clock of a dry run: the scenario worker's own rounds (`ScenarioWorker.run_once`:
triggers, then due waits), run against the scratch database as the recorded period unfolds,
with every decision made at the moment of its trigger or its due wait
(`DecisionClock.EVENT`), as a live worker makes it within a second of the event.

A round begins at the next thing that would have woken a live worker: a trigger the
simulated scenario reacts to, a wait coming due, or (birthday and lapse scenarios) the
hourly calendar look. It takes in as much of what follows as keeps every customer's story
in order, and writes the rows recorded meanwhile (`cloud.simulation.scratch.Timeline`)
before the worker runs:

- a trigger round ends before a trigger of a customer with a wait due before it, before
  a row recorded about a customer after one of the round's triggers (an order line a
  decision of the round must not see yet), and within `ROUND_SPAN` and the scenario's
  shortest wait (a journey the round starts cannot fall due inside it);
- a wait round ends before the next trigger, and before a row recorded about a customer
  after one of the round's due waits.

So each customer's triggers, waits and recorded facts meet the engine in the order they
happened. Across customers a round may decide a later trigger of one before an earlier
due wait of another; only an offer's remaining stock can tell the difference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from cloud.scenarios.models import JourneyStatus
from cloud.scenarios.run import DecisionClock, EngineConfig, RunReport
from cloud.scenarios.spec import ScenarioSpec, WaitForEventStep, WaitStep
from cloud.scenarios.worker import ScenarioWorker
from cloud.simulation.scratch import JOURNEY, Pending, Timeline, customer_of, write
from cloud.triggers import TriggerKind

#: The longest stretch of recorded time one round takes in: long enough that a large
#: shop's month is a few thousand rounds, short enough that a round's batch stays small.
ROUND_SPAN = timedelta(hours=1)
#: How often, in wall time, progress is reported while a dry run goes.
PROGRESS_EVERY_S = 0.5
#: Entry kinds whose triggers come from the calendar rather than from events.
CALENDAR_ENTRIES = frozenset({TriggerKind.DATE, TriggerKind.INACTIVITY})

Progress = Callable[[int, int], None]


class VirtualClock:
    """The time a round runs at; the worker reads it as it would read the wall clock."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, moment: datetime) -> None:
        self.now = max(self.now, moment)


@dataclass(frozen=True, slots=True)
class Period:
    since: datetime
    until: datetime


def round_span(spec: ScenarioSpec) -> timedelta:
    """`ROUND_SPAN`, or the scenario's shortest wait if shorter."""
    waits = [step.wait_for for step in spec.steps if isinstance(step, WaitStep)]
    waits += [step.timeout for step in spec.steps if isinstance(step, WaitForEventStep)]
    return min([ROUND_SPAN, *waits])


def replay(
    scratch: Engine, *, facts: Timeline, events: Timeline, config: EngineConfig,
    spec: ScenarioSpec, period: Period, progress: Progress | None = None,
) -> RunReport:
    """Run the worker over `period`: `events` are the triggers the simulated scenario
    reacts to, `facts` everything else recorded meanwhile. Returns what the worker did."""
    clock = VirtualClock(period.since)
    worker = ScenarioWorker(engine=scratch, config=replace(config, clock=DecisionClock.EVENT),
                            now=clock)
    span = round_span(spec)
    next_calendar = period.since if spec.entry.event in CALENDAR_ENTRIES else None
    calendar_every = timedelta(seconds=config.settings.schedule_interval_s)
    reported = time.monotonic()
    while True:
        event_at, wake_at = events.next_moment(), _next_wake(scratch)
        first = min((m for m in (event_at, wake_at, next_calendar) if m is not None),
                    default=None)
        if first is None or first >= period.until:
            break
        if first == next_calendar:
            clock.advance(first)
            write(scratch, facts.until(first))
            worker.record_calendar(first)
            next_calendar = first + calendar_every
        elif first == wake_at:
            reach = _earliest(event_at, next_calendar, period.until)
            clock.advance(_wake_round(scratch, facts, reach))
        else:
            reach = _earliest(first + span, next_calendar, period.until)
            clock.advance(first)
            _trigger_round(scratch, facts, events, reach)
        worker.run_once(calendar=False, timers=True)
        if progress is not None and time.monotonic() - reported >= PROGRESS_EVERY_S:
            progress(events.handed_over, len(events))
            reported = time.monotonic()
    write(scratch, facts.until(period.until))
    if progress is not None:
        progress(events.handed_over, len(events))
    return worker.totals


def _earliest(*moments: datetime | None) -> datetime:
    return min(moment for moment in moments if moment is not None)


def _trigger_round(scratch: Engine, facts: Timeline, events: Timeline, reach: datetime) -> None:
    """Write the round's triggers and the rows recorded among them (module docstring)."""
    due_for: dict[int, datetime] = {}
    for waiting_customer, due_at in _waits_before(scratch, reach):
        due_for.setdefault(waiting_customer, due_at)
    upcoming, rows = events.upcoming(), facts.upcoming()
    seen: set[int] = set()
    taken = facts_taken = 0
    while taken < len(upcoming) and upcoming[taken].at < reach:
        event = upcoming[taken]
        fact_stop = _facts_until(rows, facts_taken, event.at, seen)
        if fact_stop is None:
            break
        facts_taken = fact_stop
        customer = customer_of(event)
        due = due_for.get(customer) if customer is not None else None
        if taken and due is not None and due <= event.at:
            break
        if customer is not None:
            seen.add(customer)
        taken += 1
    write(scratch, facts.take(facts_taken))
    write(scratch, events.take(taken))


def _facts_until(
    rows: Sequence[Pending], start: int, moment: datetime, seen: set[int]
) -> int | None:
    """How many of `rows` (from `start`) came to be by `moment`, or None when one of them
    is about a customer in `seen` (it must wait for the next round)."""
    index = start
    while index < len(rows) and rows[index].at <= moment:
        if customer_of(rows[index]) in seen:
            return None
        index += 1
    return index


def _wake_round(scratch: Engine, facts: Timeline, reach: datetime) -> datetime:
    """Write the rows recorded up to the round's last due wait (module docstring);
    returns the moment the round runs at (its last due wait). A wait due at the moment of
    the next trigger ends first."""
    waiting, rows = _waits_before(scratch, reach, inclusive=True), facts.upcoming()
    seen: set[int] = set()
    last, facts_taken = waiting[0][1], 0
    for customer, due in waiting:
        stop = _facts_until(rows, facts_taken, due, seen)
        if stop is None:
            break
        facts_taken, last = stop, due
        seen.add(customer)
    write(scratch, facts.take(facts_taken))
    return last


def _next_wake(scratch: Engine) -> datetime | None:
    with scratch.connect() as connection:
        return connection.execute(
            select(JOURNEY.c.wake_at).where(JOURNEY.c.status == JourneyStatus.WAITING.value)
            .order_by(JOURNEY.c.wake_at).limit(1)
        ).scalar()


def _waits_before(
    scratch: Engine, reach: datetime, *, inclusive: bool = False
) -> list[tuple[int, datetime]]:
    """(customer, due) of the waits due before `reach` (or at it, `inclusive`), soonest
    first."""
    due = JOURNEY.c.wake_at <= reach if inclusive else JOURNEY.c.wake_at < reach
    with scratch.connect() as connection:
        return [(int(customer), moment) for customer, moment in connection.execute(
            select(JOURNEY.c.customer_id, JOURNEY.c.wake_at)
            .where(JOURNEY.c.status == JourneyStatus.WAITING.value, due)
            .order_by(JOURNEY.c.wake_at)
        )]
