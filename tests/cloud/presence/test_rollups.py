"""Footfall roll-ups kept by the worker's own path (ingest marks, the consumer's roll-up
step rebuilds), held equal to the figures computed from the events, on SQLite and
PostgreSQL: after random events, replays, late events, rewritten pseudonyms and two
workers at once."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from cloud.db import session_scope
from cloud.ingest.batch import Inbound, write_batch
from cloud.ingest.consumer import PresenceConsumer
from cloud.metrics import REGISTRY
from cloud.presence.analytics import footfall, footfall_from_events, footfall_hourly
from cloud.presence.retention import purge_unconsented
from cloud.presence.rollups import hours_between, refresh_dirty, refresh_step
from cloud.presence.visits import counted_visits, hour_of, tally
from shared.presence import PresenceEvent, PseudonymScope
from tests.cloud.factories import (
    START,
    batch_payload,
    cloud_settings,
    make_event,
    presence_topic,
    wifi_pseudonym,
)

DAY0 = START.replace(hour=0, minute=0, second=0, microsecond=0)
DAYS = 3
_tenants = itertools.count()


def ingest(engine: Engine, events: Sequence[PresenceEvent], *, at: datetime = START) -> int:
    """Store events as the worker does: one message per gateway, one transaction."""
    by_gateway: dict[tuple[str, str, str], list[PresenceEvent]] = {}
    for event in events:
        by_gateway.setdefault((event.tenant, event.store, event.gateway), []).append(event)
    inbounds = [Inbound(presence_topic(tenant, store, gateway), batch_payload(group))
                for (tenant, store, gateway), group in by_gateway.items()]
    return write_batch(engine, inbounds, received_at=at).events_new


def refresh(engine: Engine, *, at: datetime = START) -> int:
    return refresh_step(engine, limit=7, now=at).hours


def snapshot(engine: Engine, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return {
            table: [tuple(row) for row in connection.execute(
                text(f"SELECT * FROM {table} WHERE tenant = :t ORDER BY 1, 2, 3, 4"),
                {"t": tenant})]
            for table in ("footfall_hour", "footfall_day")
        }


def assert_rollups_match_events(engine: Engine, tenant: str, *, days: int = DAYS) -> None:
    since, until = DAY0, DAY0 + timedelta(days=days)
    with session_scope(engine) as session:
        for by_zone in (False, True):
            rolled = footfall(session, tenant=tenant, since=since, until=until, by_zone=by_zone)
            raw = footfall_from_events(session, tenant=tenant, since=since, until=until,
                                       by_zone=by_zone)
            assert rolled == raw
        hourly = footfall_hourly(session, tenant=tenant, since=since, until=until)
        visits = counted_visits(session, tenant=tenant, since=since, until=until)
    by_hour = tally((visit for visit in visits if visit.zone is None), hour_of)
    assert {(row.store, row.hour): (row.devices, row.visitors) for row in hourly} == {
        (store, hour): (figures.devices, figures.visitors)
        for (store, _, hour), figures in by_hour.items()
    }


def fresh_tenant() -> str:
    return f"t{next(_tenants)}"


@st.composite
def presence(draw: st.DrawFn, tenant: str) -> list[PresenceEvent]:
    """A few devices in two stores over three days: overlapping and chained sightings,
    several gateways and zones, stable and daily pseudonyms, whole seconds."""
    events = []
    for sequence in range(draw(st.integers(1, 30))):
        device = draw(st.integers(0, 5))
        first = DAY0 + timedelta(seconds=draw(st.integers(0, DAYS * 86_400 - 1)))
        length = timedelta(seconds=draw(st.sampled_from([0, 20, 59, 60, 200, 299, 900, 4000])))
        events.append(make_event(
            tenant=tenant, pseudonym=wifi_pseudonym(f"00:1e:c2:00:00:{device:02x}"),
            store=draw(st.sampled_from(["s1", "s2"])),
            gateway=draw(st.sampled_from(["door", "back"])),
            zone=draw(st.sampled_from(["floor", "tills"])),
            first_seen=first, last_seen=first + length, sequence=sequence,
            scope=PseudonymScope.DAILY if device == 5 else PseudonymScope.STABLE,
        ))
    return events


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_rollups_kept_by_the_worker_equal_the_events(engine: Engine, data: st.DataObject) -> None:
    tenant = fresh_tenant()
    first = data.draw(presence(tenant))
    late = data.draw(presence(tenant))
    ingest(engine, first)
    refresh(engine)
    assert_rollups_match_events(engine, tenant)
    # Late events (anywhere in the three days) and a replay of earlier ones.
    ingest(engine, late + first[: len(first) // 2])
    refresh(engine)
    assert_rollups_match_events(engine, tenant)


def visit(tenant: str, device: int, at: timedelta, minutes: float, *, seq: int = 0,
          store: str = "s1") -> PresenceEvent:
    first = DAY0 + at
    return make_event(tenant=tenant, pseudonym=wifi_pseudonym(f"00:1e:c2:00:01:{device:02x}"),
                      store=store, first_seen=first, last_seen=first + timedelta(minutes=minutes),
                      sequence=seq)


def test_a_replay_leaves_the_rollups_as_they_were(engine: Engine, tenant: str) -> None:
    events = [visit(tenant, n, timedelta(hours=10, minutes=n), 3 + n) for n in range(5)]
    assert ingest(engine, events) == 5
    assert refresh(engine) > 0
    before = snapshot(engine, tenant)
    assert before["footfall_day"]
    assert ingest(engine, events) == 0
    assert refresh(engine) == 0  # nothing stored, nothing marked
    assert snapshot(engine, tenant) == before


def test_a_late_event_moves_its_hour(engine: Engine, tenant: str) -> None:
    ingest(engine, [visit(tenant, 1, timedelta(days=1, hours=9), 10)])
    refresh(engine)
    since, until = DAY0, DAY0 + timedelta(days=2)
    with session_scope(engine) as session:
        hours = footfall_hourly(session, tenant=tenant, since=since, until=until)
    assert [(row.hour, row.visitors) for row in hours] == [(DAY0 + timedelta(days=1, hours=9), 1)]
    # A gateway that was offline reports yesterday afternoon, and a visit that joins
    # this morning's (four minutes after it ended), a day later.
    ingest(engine, [visit(tenant, 2, timedelta(hours=14, minutes=30), 0.5),
                    visit(tenant, 1, timedelta(days=1, hours=9, minutes=14), 20, seq=1)],
           at=START + timedelta(days=1))
    refresh(engine)
    with session_scope(engine) as session:
        hours = footfall_hourly(session, tenant=tenant, since=since, until=until)
        day = footfall(session, tenant=tenant, since=since, until=until)
    assert [(row.hour, row.devices, row.passers_by) for row in hours] == [
        (DAY0 + timedelta(hours=14), 1, 1), (DAY0 + timedelta(days=1, hours=9), 1, 0),
    ]
    assert [row.median_dwell_s for row in day] == [None, 34 * 60]
    assert_rollups_match_events(engine, tenant)


def test_rewritten_pseudonyms_are_rolled_up_again(engine: Engine, tenant: str) -> None:
    """Retention gives yesterday's visit a daily pseudonym: today's visit is no longer a
    repeat, and yesterday's visitor is unknown."""
    ingest(engine, [visit(tenant, 1, timedelta(hours=10), 5),
                    visit(tenant, 1, timedelta(days=1, hours=10), 5, seq=1)])
    refresh(engine)
    since, until = DAY0, DAY0 + timedelta(days=2)
    with session_scope(engine) as session:
        before = footfall(session, tenant=tenant, since=since, until=until)
    assert [(row.new_visitors, row.repeat_visitors) for row in before] == [(1, 0), (0, 1)]
    with session_scope(engine) as session:
        assert purge_unconsented(session, now=DAY0 + timedelta(days=1, hours=12)) == 1
        session.commit()
    refresh(engine)
    with session_scope(engine) as session:
        after = footfall(session, tenant=tenant, since=since, until=until)
    assert [(row.new_visitors, row.repeat_visitors, row.unknown_visitors)
            for row in after] == [(0, 0, 1), (1, 0, 0)]
    assert_rollups_match_events(engine, tenant, days=2)


def test_the_consumers_step_rebuilds_and_reports_no_lag(
    engine: Engine, tenant: str, migrated_url: str
) -> None:
    ingest(engine, [visit(tenant, n, timedelta(hours=n), 2) for n in range(3)])
    consumer = PresenceConsumer(settings=cloud_settings(tenant=tenant, database_url=migrated_url),
                                engine=engine, now=lambda: START + timedelta(minutes=1))
    outcome = consumer.refresh_rollups()
    # Each visit marks the hours from five minutes before it to five after.
    assert outcome.hours == len({hour for n in range(3) for hour in hours_between(
        DAY0 + timedelta(hours=n) - timedelta(minutes=5),
        DAY0 + timedelta(hours=n, minutes=7))})
    assert REGISTRY.get_sample_value("vitrina_footfall_rollup_lag_seconds") == 0
    assert_rollups_match_events(engine, tenant, days=1)


def test_two_workers_rebuild_each_marked_hour_once(engine: Engine, tenant: str) -> None:
    events = [visit(tenant, n % 7, timedelta(hours=n * 2, minutes=n), 3 + n % 4, seq=n,
                    store=f"s{n % 3}") for n in range(30)]
    ingest(engine, events)
    with engine.connect() as connection:
        marked = connection.execute(text("SELECT count(*) FROM footfall_dirty_hour")).scalar()
    assert marked
    start = threading.Barrier(2)
    taken: list[int] = []

    def worker() -> None:
        start.wait()
        while True:
            with session_scope(engine) as session:
                outcome = refresh_dirty(session, limit=3)
                session.commit()
            taken.append(outcome.hours)
            if not outcome.hours:
                return

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(taken) == marked
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM footfall_dirty_hour")).scalar() == 0
    assert_rollups_match_events(engine, tenant)


def test_days_are_whole_utc_days(engine: Engine, tenant: str) -> None:
    """A visit from 23:50 to 00:20 belongs to the day and hour it started in."""
    ingest(engine, [visit(tenant, 1, timedelta(hours=23, minutes=50), 30)])
    refresh(engine)
    with session_scope(engine) as session:
        rows = footfall(session, tenant=tenant, since=DAY0, until=DAY0 + timedelta(days=2))
    assert [(row.day, row.visitors, row.dwell["30-60m"]) for row in rows] == [
        (date.fromisoformat(DAY0.date().isoformat()), 1, 1)
    ]


@pytest.mark.parametrize("hours", [0, 1])
def test_hours_between_covers_both_ends(hours: int) -> None:
    first = DAY0 + timedelta(minutes=59)
    assert hours_between(first, first + timedelta(hours=hours)) == [
        DAY0 + timedelta(hours=n) for n in range(hours + 1)
    ]
