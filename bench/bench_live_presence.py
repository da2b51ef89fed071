"""The live page's queries on a large presence table: with the (tenant, last_seen) index
against the same queries without it, in one run on one database.

A fresh PostgreSQL database holds `--events` presence events (5 million by default) of
two tenants over 30 days, evenly spread up to now: 50 stores, two gateways each, three
zones, 200,000 devices, enters, dwells and exits in turn. The queries the live stream
runs are timed as they run (`cloud.presence.live`): devices present now per store and
zone, devices that entered in the last hour, the newest events on connecting, and the
events after a row id (what the stream polls every second). Then the index is dropped
and the same queries are timed again: the baseline.

    .venv/bin/python -m bench.bench_live_presence [--events N] [--repeat N] [--output PATH]

Needs a PostgreSQL server where it may create a database (VITRINA_TEST_POSTGRES, as the
tests); the database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from cloud.db import make_engine, migrate, session_scope
from cloud.presence.live import (
    entered_counts,
    events_after,
    newest_event_id,
    present_counts,
    recent_events,
)
from cloud.presence.partitions import make_days
from tests.support.postgres import fresh_database

TENANT = "bench"
HISTORY = timedelta(days=30)
INDEX = "ix_presence_event_tenant_last_seen"
DEFAULT_OUTPUT = Path("docs/benchmarks/live-presence.md")

FILL = """
INSERT INTO presence_event (event_id, tenant, store, gateway, zone, pseudonym, key_id, scope,
    kind, randomized, transition, rssi, first_seen, last_seen, dwell_s, sightings, received_at)
SELECT md5(g::text), CASE WHEN g % 4 = 0 THEN 'other' ELSE 'bench' END,
    's' || (g % 50), 'g' || (g % 50) || '-' || (g % 2),
    (ARRAY['entrance', 'floor', 'tills'])[1 + g % 3],
    'k1:' || md5('device' || (g % 200000)), 'k1', 'stable', 'wifi_probe', false,
    (ARRAY['enter', 'dwell', 'exit'])[1 + (g / 7) % 3], -60,
    :start + (g::bigint * :step) * interval '1 microsecond',
    :start + (g::bigint * :step) * interval '1 microsecond' + interval '90 seconds',
    90, 5, :start + (g::bigint * :step) * interval '1 microsecond' + interval '91 seconds'
FROM generate_series(1, :events) AS g
"""


def fill(engine: Engine, events: int, now: datetime) -> None:
    start = now - HISTORY
    step = int(HISTORY.total_seconds() * 1_000_000 / events)
    with engine.begin() as connection:
        # A partition per day first (partitioned by day of last_seen), as the worker
        # keeps them: otherwise the history would land in the default partition.
        make_days(connection, first=start.date(), last=now.date())
        connection.execute(text(FILL), {"start": start, "step": step, "events": events})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE presence_event"))


def timed(call: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median milliseconds of `repeat` calls (after one to warm the cache), and the
    last answer."""
    answer = call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), answer


def measure(engine: Engine, now: datetime, repeat: int) -> dict[str, tuple[float, str]]:
    with session_scope(engine) as session:
        newest = newest_event_id(session)
        queries: dict[str, Callable[[], object]] = {
            "devices present now": lambda: present_counts(session, tenant=TENANT, now=now),
            "entered in the last hour": lambda: entered_counts(session, tenant=TENANT, now=now),
            "newest 50 events (on connecting)": lambda: recent_events(
                session, tenant=TENANT, now=now, limit=50)[0],
            "events after a row id (each poll)": lambda: events_after(
                session, tenant=TENANT, after_id=newest - 200, limit=200),
        }
        results = {}
        for name, call in queries.items():
            milliseconds, answer = timed(call, repeat)
            results[name] = (milliseconds, describe(answer))
        return results


def describe(answer: object) -> str:
    if isinstance(answer, tuple):
        zones, stores = answer
        return f"{sum(stores.values()):,} devices in {len(zones)} store zones"
    if isinstance(answer, list) and answer and hasattr(answer[0], "devices"):
        return f"{sum(row.devices for row in answer):,} devices in {len(answer)} store zones"
    return f"{len(answer) if isinstance(answer, list) else 0} events"


def report(events: int, with_index: dict[str, tuple[float, str]],
           without: dict[str, tuple[float, str]], seconds: float) -> str:
    lines = [
        "# Live presence queries",
        "",
        "`bench/bench_live_presence.py`: the queries of the live stream "
        "(`cloud.presence.live`) on one PostgreSQL database holding "
        f"{events:,} presence events of two tenants over 30 days (evenly spread up to now; "
        "50 stores of two gateways, three zones, 200,000 devices), with the index on "
        "(tenant, last_seen) and then without it, in one run. Median of the repeats, "
        "after one call to warm the cache.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other work), "
        f"Python {platform.python_version()}; filling and analysing took {seconds:.0f} s.",
        "",
        "| query | answer | with the index | without (baseline) | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (milliseconds, answer) in with_index.items():
        baseline = without[name][0]
        lines.append(f"| {name} | {answer} | {milliseconds:.1f} ms | {baseline:.1f} ms | "
                     f"{baseline / milliseconds:.1f}x |")
    lines += [
        "",
        "The stream runs the events query every second and the counts at most every "
        "two seconds while events arrive (every 15 s otherwise), once per tenant for all "
        "the streams of a process (`cloud.api.live`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    arguments = parser.parse_args()
    now = datetime.now(UTC)
    with fresh_database("vitrina_bench_live") as url:
        migrate(url)
        engine = make_engine(url)
        try:
            started = time.monotonic()
            fill(engine, arguments.events, now)
            seconds = time.monotonic() - started
            with_index = measure(engine, now, arguments.repeat)
            with engine.begin() as connection:
                connection.execute(text(f"DROP INDEX {INDEX}"))
            without = measure(engine, now, arguments.repeat)
        finally:
            engine.dispose()
    text_out = report(arguments.events, with_index, without, seconds)
    arguments.output.write_text(text_out)
    print(text_out)


if __name__ == "__main__":
    main()
