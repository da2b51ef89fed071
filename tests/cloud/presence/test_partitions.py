"""Presence partitioned by day of last_seen on PostgreSQL: upkeep, idempotency across
partition boundaries, and hot queries that read only the recent partitions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, text
from sqlmodel import Session

from cloud.db import downgrade, make_engine, migrate, session_scope
from cloud.ingest.batch import Inbound, write_batch
from cloud.ingest.consumer import PresenceConsumer
from cloud.presence.crud import COPY_MIN_EVENTS, store_visits
from cloud.presence.live import presence_now, recent_events
from cloud.presence.partitions import (
    DEFAULT,
    day_of,
    drop_expired,
    is_partitioned,
    make_days,
    partition_name,
    partitions,
    upkeep,
)
from cloud.presence.rollup_sql import rebuild_store_sql
from cloud.presence.visits import REPEAT_LOOKBACK, counted_visits
from shared.presence import PresenceEvent
from tests.cloud.conftest import postgres_copy
from tests.cloud.factories import (
    batch_payload,
    cloud_settings,
    make_event,
    presence_topic,
    wifi_pseudonym,
)

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
MIDNIGHT = datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC)


@pytest.fixture
def pg_engine(schema_templates: dict[str, str]) -> Iterator[Engine]:
    with postgres_copy(schema_templates) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _device(i: int) -> str:
    return wifi_pseudonym(f"00:1b:00:{(i >> 8) & 255:02x}:{i & 255:02x}:02")


def _event(tenant: str, i: int, *, first: datetime, last: datetime) -> PresenceEvent:
    return make_event(tenant=tenant, pseudonym=_device(i), first_seen=first, last_seen=last)


def _count(connection: Connection, table: str) -> int:
    return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _store(engine: Engine, tenant: str, events: list[PresenceEvent], *, at: datetime) -> int:
    """Through the ingest path (one message per 400 events); returns events new."""
    inbounds = [Inbound(topic=presence_topic(tenant), payload=batch_payload(events[i : i + 400]))
                for i in range(0, len(events), 400)]
    return write_batch(engine, inbounds, received_at=at).events_new


def test_the_migrated_table_is_partitioned_with_days_ahead(pg_engine: Engine) -> None:
    with pg_engine.connect() as connection:
        assert is_partitioned(connection)
        days = set(partitions(connection))
    assert {TODAY + timedelta(days=offset) for offset in range(8)} <= days


def test_upkeep_makes_days_ahead_moves_waiting_rows_and_drops_expired(
    pg_engine: Engine, tenant: str
) -> None:
    old = MIDNIGHT - timedelta(days=40) + timedelta(hours=12)
    older = MIDNIGHT - timedelta(days=100) + timedelta(hours=12)
    _store(pg_engine, tenant, [_event(tenant, 1, first=old, last=old),
                               _event(tenant, 2, first=older, last=older)], at=NOW)
    with pg_engine.begin() as connection:
        assert _count(connection, DEFAULT) == 2  # no partition of their own yet
        done = upkeep(connection, now=NOW, days_ahead=10, keep_days=60)
        assert set(done.created) == {partition_name(old.date()), *(
            partition_name(TODAY + timedelta(days=offset)) for offset in (8, 9, 10))}
        assert done.deleted_rows == 1  # the 100-day-old event: past retention
        assert _count(connection, DEFAULT) == 0
        assert _count(connection, partition_name(old.date())) == 1
    with pg_engine.begin() as connection:
        done = upkeep(connection, now=NOW, days_ahead=10, keep_days=30)
        assert done.created == ()
        assert done.dropped == (partition_name(old.date()),)
        assert _count(connection, "presence_event") == 0
        assert min(partitions(connection)) == TODAY


def test_sqlite_deletes_expired_rows_instead(sqlite_engine: Engine, tenant: str) -> None:
    old = NOW - timedelta(days=40)
    _store(sqlite_engine, tenant, [_event(tenant, 1, first=old, last=old),
                                   _event(tenant, 2, first=NOW, last=NOW)], at=NOW)
    with sqlite_engine.begin() as connection:
        assert drop_expired(connection, now=NOW, keep_days=30).deleted_rows == 1
        assert _count(connection, "presence_event") == 1


def test_a_redelivered_event_is_stored_once_across_a_partition_boundary(
    engine: Engine, tenant: str
) -> None:
    """A batch sent just before midnight is stored; the broker redelivers it after
    midnight, when a new day's partition is current and (on PostgreSQL) the upkeep has
    run: every event is refused as a duplicate. The batch is large enough for COPY and
    holds events ending before midnight, on it, and after it."""
    yesterday = TODAY - timedelta(days=1)
    events = [
        _event(tenant, i, first=MIDNIGHT - timedelta(minutes=10),
               last=MIDNIGHT + timedelta(seconds=i - COPY_MIN_EVENTS))
        for i in range(2 * COPY_MIN_EVENTS)
    ]
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        with engine.begin() as connection:
            upkeep(connection, now=MIDNIGHT - timedelta(minutes=1), days_ahead=1, keep_days=None)
    assert _store(engine, tenant, events, at=MIDNIGHT - timedelta(seconds=5)) == len(events)
    if postgres:
        with engine.begin() as connection:
            upkeep(connection, now=MIDNIGHT + timedelta(minutes=1), days_ahead=7, keep_days=None)
    again = _store(engine, tenant, events, at=MIDNIGHT + timedelta(minutes=2))
    assert again == 0
    # And one at a time (the multi-row insert, below the COPY threshold).
    assert _store(engine, tenant, events[COPY_MIN_EVENTS - 1 : COPY_MIN_EVENTS + 1],
                  at=MIDNIGHT + timedelta(minutes=3)) == 0
    with engine.connect() as connection:
        assert _count(connection, "presence_event") == len(events)
        if postgres:
            where: dict[str, int] = dict(connection.execute(text(
                "SELECT tableoid::regclass::text, count(*) FROM presence_event "
                "GROUP BY tableoid")).all())
            assert where == {partition_name(yesterday): COPY_MIN_EVENTS,
                             partition_name(TODAY): COPY_MIN_EVENTS}


def test_a_redelivery_after_its_day_got_a_partition_is_refused(
    pg_engine: Engine, tenant: str
) -> None:
    """The first copy waited in the default partition (its day had none); the upkeep moved
    it into the day's new partition; the redelivered copy meets it there."""
    old = MIDNIGHT - timedelta(days=20)
    event = _event(tenant, 7, first=old, last=old + timedelta(minutes=3))
    assert _store(pg_engine, tenant, [event], at=NOW) == 1
    with pg_engine.begin() as connection:
        assert partition_name(old.date()) in upkeep(
            connection, now=NOW, days_ahead=7, keep_days=None).created
    assert _store(pg_engine, tenant, [event], at=NOW) == 0
    with pg_engine.connect() as connection:
        assert _count(connection, partition_name(old.date())) == 1
        assert _count(connection, DEFAULT) == 0


def _scans(session: Session) -> dict[date, int]:
    """Scans of each day partition counted by this backend so far (PostgreSQL's own
    counters; they include earlier transactions' until flushed, which never happens
    inside a transaction, so a difference within one is exact)."""
    rows = session.connection().execute(text(
        "SELECT relname, seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables "
        "WHERE relname LIKE 'presence_event_p%'"
    )).all()
    return {day: int(scans) for name, scans in rows if (day := day_of(name)) is not None}


def _touched(session: Session, query: Callable[[Session], object]) -> set[date]:
    """The day partitions `query` read: whatever its plan, one it did not scan was pruned."""
    before = _scans(session)
    query(session)
    after = _scans(session)
    return {day for day, scans in after.items() if scans > before.get(day, 0)}


@pytest.mark.parametrize(("query", "window"), [
    pytest.param(lambda s, t: store_visits(s, tenant=t, store="s1", since=MIDNIGHT, until=NOW),
                 timedelta(days=1), id="a store's visits today"),
    pytest.param(lambda s, t: presence_now(s, tenant=t, now=NOW), timedelta(days=1),
                 id="who is here now"),
    pytest.param(lambda s, t: recent_events(s, tenant=t, now=NOW, limit=50),
                 timedelta(days=1), id="the live feed's first page"),
    pytest.param(lambda s, t: counted_visits(s, tenant=t, since=MIDNIGHT, until=NOW),
                 REPEAT_LOOKBACK + timedelta(days=1), id="today's counted visits"),
    pytest.param(lambda s, t: rebuild_store_sql(s, tenant=t, store="s1", since=TODAY,
                                                until=TODAY + timedelta(days=1)),
                 REPEAT_LOOKBACK + timedelta(days=1), id="the roll-up of today"),
])
def test_hot_queries_read_only_recent_partitions(
    pg_engine: Engine, tenant: str, query: Callable[[Session, str], object],
    window: timedelta,
) -> None:
    """A year of days with events (one device a day, back every day, so repeat visits
    are looked for), a partition each: each query reads only the days its window needs."""
    with pg_engine.begin() as connection:
        upkeep(connection, now=NOW - timedelta(days=365), days_ahead=372, keep_days=None)
    days = [MIDNIGHT - timedelta(days=back) + timedelta(hours=10) for back in range(365)]
    _store(pg_engine, tenant, [_event(tenant, 1, first=day, last=day + timedelta(minutes=20))
                               for day in days], at=NOW)
    with session_scope(pg_engine) as session:
        touched = _touched(session, lambda session: query(session, tenant))
    assert touched, "the query read no day partition at all"
    oldest = (MIDNIGHT - window).date()
    assert min(touched) >= oldest, f"read {len(touched)} days back to {min(touched)}"
    assert len(touched) <= window.days + 8  # its window and the days made ahead


def test_explain_of_a_store_day_shows_only_that_day_on(
    pg_engine: Engine, tenant: str
) -> None:
    with pg_engine.begin() as connection:
        upkeep(connection, now=NOW - timedelta(days=30), days_ahead=30, keep_days=None)
        plan = "\n".join(connection.execute(text(
            "EXPLAIN SELECT * FROM presence_event WHERE tenant = :tenant AND store = 's1' "
            "AND first_seen < :until AND last_seen >= :since"
        ), {"tenant": tenant, "since": MIDNIGHT, "until": MIDNIGHT + timedelta(days=1)}
        ).scalars())
    days = {day for day in map(day_of, plan.split()) if day is not None}
    # From today on: the days made ahead are empty but cannot be ruled out (no upper bound
    # on last_seen), nor can the default partition, which is kept near empty.
    assert min(days) == TODAY, plan
    assert days == {TODAY + timedelta(days=offset) for offset in range(8)}, plan
    assert DEFAULT in plan


def test_0035_converts_an_installation_with_its_events_and_back(database_url: str) -> None:
    """Events stored before 0035 keep their ids and stay unique by event id; on
    PostgreSQL each lands in its day's partition, and new ids continue the sequence."""
    migrate(database_url, "0034")
    engine = make_engine(database_url)
    days_back = (0, 1, 45)
    try:
        with engine.begin() as connection:
            for back in days_back:
                at = NOW - timedelta(days=back)
                connection.execute(text(
                    "INSERT INTO presence_event (event_id, tenant, store, gateway, zone, "
                    "pseudonym, key_id, scope, kind, randomized, transition, rssi, first_seen,"
                    " last_seen, dwell_s, sightings, received_at) VALUES (:id, 't', 's1', "
                    "'g1', 'z', 'k1:p', 'k1', 'stable', 'wifi_association', :no, 'enter', "
                    "-60, :at, :at, 0, 1, :at)"), {"id": f"{back:032x}", "at": at, "no": False})
        migrate(database_url)
        with engine.begin() as connection:
            rows = connection.execute(text(
                "SELECT id, event_id FROM presence_event ORDER BY id")).all()
            assert [row.event_id for row in rows] == [f"{back:032x}" for back in days_back]
            if engine.dialect.name == "postgresql":
                assert is_partitioned(connection)
                assert {(NOW - timedelta(days=back)).date() for back in days_back} <= set(
                    partitions(connection))
                assert _count(connection, DEFAULT) == 0
        event = _event("t", 1, first=NOW, last=NOW)
        assert _store(engine, "t", [event], at=NOW) == 1
        assert _store(engine, "t", [event], at=NOW) == 0
        with engine.connect() as connection:
            newest = connection.execute(text("SELECT max(id) FROM presence_event")).scalar()
            assert newest == rows[-1].id + 1
        downgrade(database_url, "0034")
        with engine.connect() as connection:
            assert _count(connection, "presence_event") == len(days_back) + 1
            assert not is_partitioned(connection)
        migrate(database_url)
    finally:
        engine.dispose()


def test_the_worker_keeps_partitions_ahead_and_drops_the_expired(
    pg_engine: Engine, tenant: str
) -> None:
    """The ingest worker's retention run (also run when it starts): days made ahead as
    configured, days past `ingest.presence_retention_days` dropped."""
    old = MIDNIGHT - timedelta(days=50)
    _store(pg_engine, tenant, [_event(tenant, 1, first=old, last=old)], at=NOW)
    url = pg_engine.url.render_as_string(hide_password=False)
    settings = cloud_settings(tenant=tenant, database_url=url, ingest={
        "partition_days_ahead": 12, "presence_retention_days": 30})
    consumer = PresenceConsumer(settings=settings, engine=pg_engine, now=lambda: NOW)
    consumer.purge_once()
    with pg_engine.connect() as connection:
        days = set(partitions(connection))
        assert _count(connection, "presence_event") == 0
    assert max(days) == TODAY + timedelta(days=12)
    assert min(days) == TODAY
    assert consumer.keep_partitions().created == ()


def test_history_loaded_in_bulk_gets_its_days_first(pg_engine: Engine, tenant: str) -> None:
    first, last = TODAY - timedelta(days=12), TODAY - timedelta(days=10)
    with pg_engine.begin() as connection:
        made = make_days(connection, first=first, last=last)
        assert made == tuple(partition_name(first + timedelta(days=n)) for n in range(3))
        assert make_days(connection, first=first, last=last) == ()
    at = MIDNIGHT - timedelta(days=11) + timedelta(hours=9)
    _store(pg_engine, tenant, [_event(tenant, 1, first=at, last=at)], at=NOW)
    with pg_engine.connect() as connection:
        assert _count(connection, partition_name(at.date())) == 1
        assert _count(connection, DEFAULT) == 0
