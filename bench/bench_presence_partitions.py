"""Presence partitioned by day against the same table unpartitioned, in one run.

Two PostgreSQL databases at the current schema: in one `presence_event` is partitioned by
day of `last_seen` (as migration 0035 makes it, a partition for every day of the year and
a week ahead), in the other it is the plain table with the same columns, keys and
indexes. Both receive the same synthetic year of presence of 1,000 stores through COPY
(text format, generated on the fly, indexes in place as in production): every store open
08:00-21:00 UTC, visits spread at random over the day, dwell 10 s to an hour, one visit
in five by a regular (a stable pseudonym from a pool of the store's regulars), the rest
under a pseudonym of the day. `--events` sets how many rows the year holds: a real chain
of 1,000 stores makes tens of millions a day, which no 2-core machine loads in minutes,
so the rows are scaled down and the page says by how much.

Timed on both, in the same run:
- bulk load: COPY of the year (rows/s, generation included on both sides alike);
- the product's write path: `write_batch` (decode, COPY into the session's staging
  table, INSERT ... ON CONFLICT on (event_id, last_seen), trigger lookups, roll-up marks)
  of `--ingest` events of today in messages of 250, 64 messages a transaction: events/s,
  the worker's CPU per event and the PostgreSQL backend's CPU per event (from
  /proc/<backend pid>/stat), WAL bytes per event;
- hot queries, each `--repeat` times after a warm-up, median: a store's visits today
  (`store_visits`), who is here now (`presence_now`), today's counted visits of a store
  (`counted_visits`, which looks 90 days back for repeat visitors), the roll-up of a
  store's day (`rebuild_store_sql`);
- retention of the oldest 30 days: dropping 30 partitions (`drop_expired`) against
  `DELETE ... WHERE last_seen < cutoff` on the plain table (which also leaves the dead
  rows to vacuum, not timed here);
- bytes stored per event (table and indexes) on each.

    .venv/bin/python -m bench.bench_presence_partitions [--events N] [--ingest N]
        [--repeat N] [--output docs/benchmarks/partitions.md]

Needs a PostgreSQL server where it may create databases (VITRINA_TEST_POSTGRES, as the
tests).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import Engine, text
from sqlmodel import Session

from cloud.db import make_engine, migrate, session_scope
from cloud.ingest.batch import Inbound, write_batch
from cloud.presence.crud import store_visits
from cloud.presence.live import presence_now
from cloud.presence.models import PresenceEventRow
from cloud.presence.partitions import create_partition, drop_expired, partitions
from cloud.presence.rollup_sql import rebuild_store_sql
from cloud.presence.visits import counted_visits
from shared.identifiers import IdentifierKind
from shared.presence import (
    PresenceBatch,
    PresenceEvent,
    PseudonymScope,
    Transition,
    encode_presence_batch,
    make_event_id,
)
from tests.support.postgres import fresh_database

TENANT = "bench"
STORES = 1_000
DAYS = 365
#: Roughly what 1,000 stores make a day (the product requirement: tens of millions).
REALISTIC_PER_DAY = 30_000_000
REGULARS_PER_STORE = 200
OPEN_S, CLOSE_S = 8 * 3600, 21 * 3600
ZONES = ("entrance", "floor", "tills")
PER_MESSAGE, MESSAGES_PER_BATCH = 250, 64
RETENTION_DROPPED_DAYS = 30
COLUMNS = ("event_id", "tenant", "store", "gateway", "zone", "pseudonym", "key_id", "scope",
           "kind", "randomized", "transition", "rssi", "first_seen", "last_seen", "dwell_s",
           "sightings", "received_at")
#: Clock ticks per second for /proc/<pid>/stat (Linux's USER_HZ).
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Side:
    name: str
    url: str
    engine: Engine


def _rows(count: int, *, now: datetime, seed: int = 7) -> Iterator[str]:
    """`count` text-format COPY lines, spread over the `DAYS` days before today."""
    rng = random.Random(seed)
    today = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    for index in range(count):
        store = index % STORES
        day = today - timedelta(days=1 + rng.randrange(DAYS))
        start = day + timedelta(seconds=rng.randrange(OPEN_S, CLOSE_S))
        dwell = rng.uniform(10, 3600)
        end = start + timedelta(seconds=dwell)
        if rng.random() < 0.2:
            pseudonym, scope = f"k1:r{store:04d}{rng.randrange(REGULARS_PER_STORE):04d}", "stable"
        else:
            pseudonym, scope = f"k1:d{index:024x}", "daily"
        yield "\t".join((
            f"{index:032x}", TENANT, f"s{store:04d}", f"g{rng.randrange(2)}",
            ZONES[rng.randrange(3)], pseudonym, "k1", scope, "wifi_association",
            "f", "exit", "-60", start.isoformat(), end.isoformat(), f"{dwell:.3f}", "3",
            end.isoformat(),
        )) + "\n"


def _copy(side: Side, count: int, *, now: datetime) -> float:
    """COPY the year into `side`; returns seconds."""
    dsn = side.url.replace("postgresql+psycopg://", "postgresql://", 1)
    started = time.monotonic()
    statement = sql.SQL("COPY presence_event ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor, cursor.copy(
        statement
    ) as copy:
        chunk: list[str] = []
        for line in _rows(count, now=now):
            chunk.append(line)
            if len(chunk) == 10_000:
                copy.write("".join(chunk))
                chunk.clear()
        copy.write("".join(chunk))
    elapsed = time.monotonic() - started
    with side.engine.begin() as analyze:
        analyze.execute(text("ANALYZE presence_event"))
    return elapsed


def _prepare(url: str, *, partitioned: bool, now: datetime) -> Side:
    migrate(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        if partitioned:
            today = now.date()
            have = set(partitions(connection))
            for back in range(DAYS + 1):
                day = today - timedelta(days=back)
                if day not in have:
                    create_partition(connection, day)
        else:
            connection.execute(text("DROP TABLE presence_event CASCADE"))
            cast("Any", PresenceEventRow).__table__.create(connection)
    return Side("partitioned" if partitioned else "plain", url, engine)


def _backend_cpu(session: Session) -> Callable[[], float]:
    """CPU seconds of the PostgreSQL backend serving `session` so far."""
    pid = session.connection().execute(text("SELECT pg_backend_pid()")).scalar_one()

    def read() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    return read


def _ingest_messages(count: int, *, now: datetime) -> list[Inbound]:
    events = []
    base = now - timedelta(hours=1)
    for index in range(count):
        store = f"s{index % STORES:04d}"
        pseudonym = f"k1:{index:032x}"
        first = base + timedelta(milliseconds=index)
        events.append(PresenceEvent(
            event_id=make_event_id(tenant=TENANT, store=store, gateway="g0",
                                   pseudonym=pseudonym, transition=Transition.ENTER,
                                   first_seen=first, sequence=0),
            tenant=TENANT, store=store, gateway="g0", pseudonym=pseudonym, key_id="k1",
            scope=PseudonymScope.DAILY, kind=IdentifierKind.WIFI_ASSOCIATION, randomized=False,
            transition=Transition.ENTER, zone="floor", rssi=-60.0, first_seen=first,
            last_seen=first + timedelta(seconds=5), dwell_s=5.0, sightings=1,
        ))
    by_store: dict[str, list[PresenceEvent]] = {}
    for event in events:
        by_store.setdefault(event.store, []).append(event)
    inbounds = []
    for store, group in by_store.items():
        for start in range(0, len(group), PER_MESSAGE):
            batch = PresenceBatch(tenant=TENANT, store=store, gateway="g0", sent_at=now,
                                  events=group[start : start + PER_MESSAGE])
            inbounds.append(Inbound(topic=f"vitrina/v1/{TENANT}/{store}/g0/presence",
                                    payload=encode_presence_batch(batch)))
    return inbounds


@dataclass(frozen=True, slots=True)
class Ingest:
    events_per_s: float
    client_us: float
    server_us: float
    wal_bytes: float


def _ingest(side: Side, inbounds: list[Inbound], events: int, *, now: datetime) -> Ingest:
    with session_scope(side.engine) as session:
        wal = session.connection().execute(text("SELECT pg_current_wal_lsn()")).scalar_one()
    # One connection in the pool is reused for every batch: read its backend's CPU.
    engine = make_engine(side.url)
    try:
        with session_scope(engine) as session:
            cpu = _backend_cpu(session)
        server_before, client_before = cpu(), time.process_time()
        started = time.monotonic()
        for start in range(0, len(inbounds), MESSAGES_PER_BATCH):
            write_batch(engine, inbounds[start : start + MESSAGES_PER_BATCH], received_at=now)
        elapsed = time.monotonic() - started
        client, server = time.process_time() - client_before, cpu() - server_before
        with session_scope(engine) as session:
            written = session.connection().execute(
                text("SELECT pg_current_wal_lsn() - CAST(:lsn AS pg_lsn)"), {"lsn": wal}
            ).scalar_one()
    finally:
        engine.dispose()
    return Ingest(events / elapsed, client / events * 1e6, server / events * 1e6,
                  float(written) / events)


def _median_ms(run: Callable[[], object], repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        started = time.monotonic()
        run()
        times.append((time.monotonic() - started) * 1000)
    return statistics.median(times)


def _queries(now: datetime) -> dict[str, Callable[[Session], object]]:
    midnight = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    return {
        "a store's visits today (`store_visits`)": lambda s: store_visits(
            s, tenant=TENANT, store="s0007", since=midnight, until=now),
        "who is here now (`presence_now`)": lambda s: presence_now(s, tenant=TENANT, now=now),
        "today's counted visits of a store, 90 days' repeats (`counted_visits`)":
            lambda s: counted_visits(s, tenant=TENANT, store="s0007", since=midnight,
                                     until=now),
        "a store's day of roll-ups (`rebuild_store_sql`, yesterday)":
            lambda s: rebuild_store_sql(s, tenant=TENANT, store="s0007",
                                        since=now.date() - timedelta(days=1), until=now.date()),
    }


def _query(side: Side, run: Callable[[Session], object], repeat: int) -> float:
    def once() -> None:
        with session_scope(side.engine) as session:
            run(session)
            session.rollback()  # the roll-up writes: leave the tables as they were

    return _median_ms(once, repeat)


def _retention(side: Side, *, now: datetime) -> tuple[float, int]:
    """Remove the oldest `RETENTION_DROPPED_DAYS` days; returns seconds and rows gone.
    Timed from midnight, so the cutoff falls between days and the DELETE removes the
    same rows as the dropped partitions."""
    keep = DAYS + 1 - RETENTION_DROPPED_DAYS
    now = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    with side.engine.begin() as connection:
        before = connection.execute(text("SELECT count(*) FROM presence_event")).scalar_one()
    started = time.monotonic()
    with side.engine.begin() as connection:
        drop_expired(connection, now=now, keep_days=keep)
    elapsed = time.monotonic() - started
    with side.engine.begin() as connection:
        after = connection.execute(text("SELECT count(*) FROM presence_event")).scalar_one()
    return elapsed, int(before - after)


def _bytes_per_event(side: Side) -> tuple[float, float]:
    """Heap and index bytes per stored event."""
    with side.engine.begin() as connection:
        rows = connection.execute(text("SELECT count(*) FROM presence_event")).scalar_one()
        heap, index = connection.execute(text(
            "SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid)) FROM ("
            "SELECT relid FROM pg_partition_tree('presence_event') "
            "UNION SELECT 'presence_event'::regclass) AS tree"
        )).one()
    return float(heap) / rows, float(index) / rows


def _migration(rows: int, *, now: datetime) -> float:
    """Rows per second of migration 0035 converting a table of `rows` rows (the year's
    first rows) on a database at the revision before it."""
    with fresh_database("vitrina_bench_migrate") as url:
        migrate(url, "0032")
        engine = make_engine(url)
        try:
            _copy(Side("before 0035", url, engine), rows, now=now)
        finally:
            engine.dispose()
        started = time.monotonic()
        migrate(url)
        return rows / (time.monotonic() - started)


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_650_000)
    parser.add_argument("--ingest", type=int, default=64_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--migration-rows", type=int, default=500_000,
                        help="rows of the table migration 0035 converts (0: not timed)")
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    lines: list[str] = []
    loads = [_load()]
    with ExitStack() as stack:
        sides = [
            _prepare(stack.enter_context(fresh_database("vitrina_bench_part")),
                     partitioned=True, now=now),
            _prepare(stack.enter_context(fresh_database("vitrina_bench_plain")),
                     partitioned=False, now=now),
        ]
        try:
            load = {side.name: args.events / _copy(side, args.events, now=now) for side in sides}
            loads.append(_load())
            inbounds = _ingest_messages(args.ingest, now=now)
            ingest = {side.name: _ingest(side, inbounds, args.ingest, now=now)
                      for side in sides}
            loads.append(_load())
            stored = {side.name: _bytes_per_event(side) for side in sides}
            queries = {name: {side.name: _query(side, run, args.repeat) for side in sides}
                       for name, run in _queries(now).items()}
            loads.append(_load())
            retention = {side.name: _retention(side, now=now) for side in sides}
            loads.append(_load())
            converted = _migration(args.migration_rows, now=now) if args.migration_rows else 0
            if args.migration_rows:
                loads.append(_load())
        finally:
            for side in sides:
                side.engine.dispose()
    part, plain = "partitioned", "plain"
    per_day = args.events / DAYS
    lines += [
        "# Presence partitioned by day, against the same table unpartitioned",
        "",
        f"Measured {now:%Y-%m-%d %H:%M} UTC by `bench/bench_presence_partitions.py` on "
        f"{platform.machine()} ({os.cpu_count()} cores, PostgreSQL on the same machine); "
        f"load average (1, 5, 15 min) at the start and after each phase: "
        f"{'; '.join(loads)}.",
        "",
        f"A year ({DAYS} days) of presence of {STORES:,} stores, {args.events:,} rows "
        f"({per_day:,.0f} a day, {per_day / STORES:.1f} per store and day). A chain of "
        f"{STORES:,} stores makes about {REALISTIC_PER_DAY:,} a day: the rows here are "
        f"that rate scaled by 1/{REALISTIC_PER_DAY / per_day:,.0f}, so per-day partitions "
        "hold far fewer rows than in production, and the plain table is far smaller than a "
        "real year's. Both databases get the same rows, in the same run.",
        "",
        "| what | partitioned | plain | partitioned / plain |",
        "| --- | --- | --- | --- |",
        f"| bulk load (COPY, indexes in place), rows/s | {load[part]:,.0f} | "
        f"{load[plain]:,.0f} | {load[part] / load[plain]:.2f} |",
        f"| the product's write path (`write_batch`, {args.ingest:,} events of today), "
        f"events/s | {ingest[part].events_per_s:,.0f} | {ingest[plain].events_per_s:,.0f} | "
        f"{ingest[part].events_per_s / ingest[plain].events_per_s:.2f} |",
        f"| — worker CPU per event (decode, COPY, triggers), µs | "
        f"{ingest[part].client_us:.1f} | {ingest[plain].client_us:.1f} | "
        f"{ingest[part].client_us / ingest[plain].client_us:.2f} |",
        f"| — PostgreSQL backend CPU per event, µs | {ingest[part].server_us:.1f} | "
        f"{ingest[plain].server_us:.1f} | {ingest[part].server_us / ingest[plain].server_us:.2f} |",
        f"| — WAL per event, bytes | {ingest[part].wal_bytes:,.0f} | "
        f"{ingest[plain].wal_bytes:,.0f} | "
        f"{ingest[part].wal_bytes / ingest[plain].wal_bytes:.2f} |",
        f"| stored per event: table, bytes | {stored[part][0]:,.0f} | {stored[plain][0]:,.0f} | "
        f"{stored[part][0] / stored[plain][0]:.2f} |",
        f"| stored per event: indexes, bytes | {stored[part][1]:,.0f} | "
        f"{stored[plain][1]:,.0f} | {stored[part][1] / stored[plain][1]:.2f} |",
    ]
    for name, times in queries.items():
        lines.append(f"| {name}, ms (median of {args.repeat}) | {times[part]:.1f} | "
                     f"{times[plain]:.1f} | {times[part] / times[plain]:.2f} |")
    lines.append(
        f"| retention: the oldest {RETENTION_DROPPED_DAYS} days "
        f"({retention[part][1]:,} / {retention[plain][1]:,} rows), s | "
        f"{retention[part][0]:.2f} (drop {RETENTION_DROPPED_DAYS} partitions) | "
        f"{retention[plain][0]:.2f} (DELETE) | {retention[part][0] / retention[plain][0]:.3f} |")
    if converted:
        lines += ["", f"Migration 0035 converted a table of {args.migration_rows:,} rows "
                      f"(0032 to head, indexes and partitions included) at {converted:,.0f} "
                      f"rows/s: about {1_000_000 / converted:.0f} s a million rows here."]
    lines.append("")
    page = "\n".join(lines)
    print(page)
    if args.output is not None:
        args.output.write_text(page)



if __name__ == "__main__":
    main()
