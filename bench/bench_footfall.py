"""The 90-day footfall chart of a hundred stores, read from the roll-ups through the API,
against the same figures computed from the raw events, in one run on one database.

A PostgreSQL database holds a year of presence of `--stores` stores (`--events` events,
50 million by default), made on the server (`generate_series`, indexes built after the
fill): each store's devices come and go at random through the year, one in five under a
stable pseudonym (a regular, who comes back), the rest under a pseudonym per day; three
zones, two gateways, sightings from 10 seconds to an hour. The roll-ups are built with
the backfill (`vitrina-cloud rollups rebuild`'s SQL). The database is kept between runs,
named after the parameters (`--fresh` makes it anew, `--drop` drops it at the end).

Timed, after one call to warm the cache:
- the chart: GET /tenants/bench/analytics/footfall for the last 90 days of every store,
  through the app (HTTP in process, an admin key), `--repeat` times: p50 and p95;
- the baseline, the same question answered from the events (`footfall_from_events`,
  what the route did before the roll-ups, with the window the roll-ups need): a year of
  raw events per request cannot finish in a request, so it is timed on a smaller
  question, one day of every store and 90 days of one store, and scaled (it reads and
  merges every event of the window: its time grows with the events read).

    .venv/bin/python -m bench.bench_footfall [--events N] [--stores N] [--repeat N]
        [--output PATH] [--fresh] [--drop]

Needs a PostgreSQL server where it may create a database (VITRINA_TEST_POSTGRES, as the
tests).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy import Engine, text

from cloud.api import create_app
from cloud.db import make_engine, migrate, session_scope
from cloud.presence.analytics import footfall_from_events
from cloud.presence.partitions import make_days
from cloud.presence.rollup_sql import rebuild_sql
from cloud.presence.rollups import lock_store, rebuild_store_days
from tests.cloud.factories import bearer, cloud_settings, issue_key
from tests.support.postgres import admin_connection, server_url

TENANT = "bench"
#: The year the data covers ends here (a fixed day: the cached database stays valid).
END = datetime(2026, 12, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
CHART = timedelta(days=90)
DEFAULT_OUTPUT = Path("docs/benchmarks/analytics.md")
#: Devices per store: with about 1,400 sightings a store and day, a regular comes back
#: every few weeks and a device under a daily pseudonym now and then twice a day.
DEVICES_PER_STORE = 4000
#: Fill statements of this many events each (progress, and bounded transactions).
FILL_CHUNK = 5_000_000
SECONDARY_INDEXES = {
    "ix_presence_event_store_time": "(tenant, store, first_seen)",
    "ix_presence_event_pseudonym": "(tenant, pseudonym, first_seen)",
    "ix_presence_event_tenant_last_seen": "(tenant, last_seen)",
}

#: One sighting per row: a store, a device of it, a moment in the year, a zone and a
#: dwell drawn from `random()` (seeded per run: the same data for the same parameters).
FILL = """
INSERT INTO presence_event (event_id, tenant, store, gateway, zone, pseudonym, key_id, scope,
    kind, randomized, transition, rssi, first_seen, last_seen, dwell_s, sightings, received_at)
SELECT md5('bench' || g), :tenant, 's' || store, 's' || store || '-g' || (g % 2),
    (ARRAY['entrance', 'floor', 'tills'])[1 + (g / 7) % 3],
    CASE WHEN device % 5 = 0 THEN 'k1:' || md5('s' || store || 'd' || device)
         ELSE 'k1:' || md5('s' || store || 'd' || device || 'day' || (at / 86400000000))
    END,
    'k1', CASE WHEN device % 5 = 0 THEN 'stable' ELSE 'daily' END, 'wifi_probe',
    device % 5 <> 0, 'exit', -60,
    :start + at * interval '1 microsecond',
    :start + (at + dwell) * interval '1 microsecond', dwell / 1e6, 3,
    :start + (at + dwell) * interval '1 microsecond'
FROM (
    SELECT g, g % :stores AS store, (random() * :devices)::int AS device,
        (random() * :span)::bigint AS at,
        (CASE WHEN random() < 0.4 THEN 10 + random() * 40 ELSE 60 + random() * 3540 END
         * 1e6)::bigint AS dwell
    FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
) AS drawn
"""


@dataclass(frozen=True, slots=True)
class Parameters:
    events: int
    stores: int

    @property
    def database(self) -> str:
        digest = hashlib.sha256(f"{self.events}/{self.stores}/{END.date()}/v1".encode())
        return f"vitrina_bench_footfall_{digest.hexdigest()[:10]}"


def database_url(name: str) -> str:
    return f"{server_url()}/{name}"


def database_exists(name: str) -> bool:
    with admin_connection() as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                             ).fetchone() is not None


def drop_database(name: str) -> None:
    with admin_connection() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def is_complete(engine: Engine) -> bool:
    """A cached database is used only if its fill and roll-ups finished (the marker is
    written last)."""
    with engine.connect() as connection:
        return bool(connection.execute(text(
            "SELECT count(*) FROM pg_class WHERE relname = 'bench_footfall_complete'"
        )).scalar())


def fill(engine: Engine, parameters: Parameters) -> float:
    """The year of events; returns seconds taken."""
    started = time.monotonic()
    with engine.begin() as connection:
        # A partition per day of the year first (the table is partitioned by day of
        # last_seen): otherwise the year would land in the default partition.
        make_days(connection, first=(END - YEAR).date(), last=END.date() + timedelta(days=1))
        for index in SECONDARY_INDEXES:
            connection.execute(text(f"DROP INDEX IF EXISTS {index}"))
        connection.execute(text("SELECT setseed(0.42)"))
        connection.execute(text("SET LOCAL synchronous_commit = off"))
        for first in range(1, parameters.events + 1, FILL_CHUNK):
            last = min(parameters.events, first + FILL_CHUNK - 1)
            connection.execute(text(FILL), {
                "tenant": TENANT, "stores": parameters.stores, "devices": DEVICES_PER_STORE,
                "span": int(YEAR.total_seconds() * 1e6), "start": END - YEAR,
                "first": first, "last": last,
            })
            print(f"  {last:,} events", flush=True)
        for index, columns in SECONDARY_INDEXES.items():
            connection.execute(text(f"CREATE INDEX {index} ON presence_event {columns}"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE presence_event"))
    return time.monotonic() - started


def roll_up(engine: Engine) -> float:
    """The backfill, as `vitrina-cloud rollups rebuild` runs it; returns seconds taken."""
    started = time.monotonic()
    with session_scope(engine) as session:
        rebuild_sql(session, tenant=TENANT, since=(END - YEAR).date(), until=END.date())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE footfall_day"))
        connection.execute(text("VACUUM ANALYZE footfall_hour"))
        connection.execute(text("CREATE TABLE bench_footfall_complete ()"))
    return time.monotonic() - started


def timings(call: Callable[[], object], repeat: int) -> list[float]:
    """Milliseconds of `repeat` calls, after one to warm the cache."""
    call()
    found = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        found.append((time.perf_counter() - started) * 1000)
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True)
class Figures:
    events: int
    stores: int
    hour_rows: int
    day_rows: int
    fill_s: float | None
    rollup_s: float | None
    chart_ms: list[float]
    chart_rows: int
    day_chart_ms: list[float]
    raw_day_ms: list[float]
    raw_store_ms: list[float]
    worker_day_ms: list[float]


def chart(client: TestClient, since: date, until: date) -> Callable[[], int]:
    def call() -> int:
        answer = client.get(f"/tenants/{TENANT}/analytics/footfall",
                            params={"since": f"{since}T00:00:00Z", "until": f"{until}T00:00:00Z"})
        answer.raise_for_status()
        return len(answer.json())
    return call


def measure(engine: Engine, url: str, parameters: Parameters, repeat: int,
            fill_s: float | None, rollup_s: float | None) -> Figures:
    until = END.date()
    since = until - timedelta(days=CHART.days)
    last_day = until - timedelta(days=1)
    settings = cloud_settings(tenant=TENANT, database_url=url)
    key = issue_key(engine, tenant=TENANT)
    with TestClient(create_app(settings, engine=engine), headers=bearer(key)) as client:
        chart_ms = timings(chart(client, since, until), repeat)
        day_chart_ms = timings(chart(client, last_day, until), repeat)
        chart_rows = chart(client, since, until)()
    raw_repeat = max(1, min(3, repeat))

    def raw_day() -> object:
        with session_scope(engine) as session:
            return footfall_from_events(session, tenant=TENANT, since=END - timedelta(days=1),
                                        until=END)

    def raw_store() -> object:
        with session_scope(engine) as session:
            return footfall_from_events(session, tenant=TENANT, since=END - CHART, until=END,
                                        store="s0")

    def worker_day() -> object:
        """What the worker's step does for a store with new events today (rolled back)."""
        with session_scope(engine) as session:
            lock_store(session, tenant=TENANT, store="s0")
            return rebuild_store_days(session, tenant=TENANT, store="s0", days=[last_day])

    raw_day_ms = timings(raw_day, raw_repeat)
    raw_store_ms = timings(raw_store, raw_repeat)
    worker_day_ms = timings(worker_day, raw_repeat)
    with engine.connect() as connection:
        hour_rows = connection.execute(text("SELECT count(*) FROM footfall_hour")).scalar()
        day_rows = connection.execute(text("SELECT count(*) FROM footfall_day")).scalar()
        events = connection.execute(text("SELECT count(*) FROM presence_event")).scalar()
    return Figures(
        events=int(events or 0), stores=parameters.stores, hour_rows=int(hour_rows or 0),
        day_rows=int(day_rows or 0), fill_s=fill_s, rollup_s=rollup_s, chart_ms=chart_ms,
        chart_rows=chart_rows, day_chart_ms=day_chart_ms, raw_day_ms=raw_day_ms,
        raw_store_ms=raw_store_ms, worker_day_ms=worker_day_ms,
    )


def report(figures: Figures) -> str:
    p50, p95 = percentile(figures.chart_ms, 0.5), percentile(figures.chart_ms, 0.95)
    raw_day = statistics.median(figures.raw_day_ms)
    raw_store = statistics.median(figures.raw_store_ms)
    day_chart = statistics.median(figures.day_chart_ms)
    # The raw path reads every event of the window: 90 days of all stores is 90 times
    # one day of all stores (and `stores` times 90 days of one store).
    raw_chart_by_days = raw_day * CHART.days
    raw_chart_by_stores = raw_store * figures.stores
    built = ("" if figures.fill_s is None else
             f" Filling took {figures.fill_s:.0f} s and the backfill {figures.rollup_s:.0f} s "
             "in this run.")
    return "\n".join([
        "# Footfall analytics on a year of presence",
        "",
        "`bench/bench_footfall.py`: the 90-day footfall chart of every store, read from the "
        "roll-ups through the API, against the same figures computed from the raw events, "
        "in one run on one PostgreSQL database.",
        "",
        "## Method",
        "",
        f"- {figures.events:,} presence events of one tenant, {figures.stores} stores, a "
        "year up to 2026-12-01, made on the server with `generate_series`: each store's "
        f"{DEVICES_PER_STORE:,} devices seen at random moments, one in five under a stable "
        "pseudonym, the others under one per day; three zones, two gateways; 40% of "
        "sightings walk past (10-50 s), the rest stay 1-60 minutes.",
        f"- Roll-ups built by the SQL backfill (`vitrina-cloud rollups rebuild`): "
        f"{figures.hour_rows:,} hourly and {figures.day_rows:,} daily rows (stores and "
        f"zones).{built}",
        f"- The chart: `GET /tenants/bench/analytics/footfall` for the last 90 days of "
        f"every store ({figures.chart_rows:,} rows of figures), through the app in process "
        f"(an admin key, JSON encoded and decoded), {len(figures.chart_ms)} times after one "
        "to warm the cache.",
        "- The baseline: the same figures from the events (`footfall_from_events`, what "
        "the route computed before the roll-ups, reading a visit's whole context). It "
        "cannot answer 90 days of 100 stores in a request (about 12 million events to "
        "read and merge in Python, more memory than a worker has to spare), so it is "
        "timed on two smaller questions and scaled by the events it reads: one day of "
        "every store (x90), and 90 days of one store (x stores).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other work, "
        f"Python {platform.python_version()}, PostgreSQL on the same machine.",
        "",
        "## Figures",
        "",
        "| question | from the roll-ups (route) | from the events (baseline) | ratio |",
        "| --- | --- | --- | --- |",
        f"| 90 days x {figures.stores} stores | p50 {p50:.1f} ms, p95 {p95:.1f} ms | "
        f"~{raw_chart_by_days / 1000:.0f} s scaled from one day, "
        f"~{raw_chart_by_stores / 1000:.0f} s from one store | "
        f"{min(raw_chart_by_days, raw_chart_by_stores) / p50:,.0f}x (the smaller estimate) |",
        f"| 1 day x {figures.stores} stores (measured both ways) | {day_chart:.1f} ms | "
        f"{raw_day:.0f} ms | {raw_day / day_chart:,.0f}x |",
        f"| 90 days x 1 store, baseline only | - | {raw_store:.0f} ms | - |",
        "",
        "What keeping them costs: the worker's step rebuilds the day of each store with new "
        f"events; one store's last day (about {figures.events // figures.stores // 365:,} "
        f"events) takes {statistics.median(figures.worker_day_ms):.0f} ms here (median of "
        f"{len(figures.worker_day_ms)}, rolled back).",
        "",
        "The roll-ups are what the events say: the tests hold them equal to "
        "`footfall_from_events` for random events, late events, replays and rewritten "
        "pseudonyms (`tests/cloud/presence/test_rollups.py`, `test_rollup_sql.py`).",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000_000)
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--fresh", action="store_true", help="make the database anew")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    arguments = parser.parse_args()
    parameters = Parameters(events=arguments.events, stores=arguments.stores)
    name = parameters.database
    url = database_url(name)
    if arguments.fresh:
        drop_database(name)
    if not database_exists(name):
        with admin_connection() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(url)
    engine = make_engine(url)
    try:
        fill_s = rollup_s = None
        if not is_complete(engine):
            with engine.begin() as connection:
                connection.execute(text(
                    "TRUNCATE presence_event, footfall_hour, footfall_day RESTART IDENTITY"))
            print(f"filling {name} with {parameters.events:,} events", flush=True)
            fill_s = fill(engine, parameters)
            print(f"filled in {fill_s:.0f} s; building the roll-ups", flush=True)
            rollup_s = roll_up(engine)
            print(f"rolled up in {rollup_s:.0f} s", flush=True)
        figures = measure(engine, url, parameters, arguments.repeat, fill_s, rollup_s)
    finally:
        engine.dispose()
        if arguments.drop:
            drop_database(name)
    text_out = report(figures)
    arguments.output.write_text(text_out)
    print(text_out)


if __name__ == "__main__":
    main()
