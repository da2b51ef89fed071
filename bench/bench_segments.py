"""Counting a segment's members on PostgreSQL, against counting the same conditions written
inline, in the same run.

A fresh database (migrated) holds `--customers` customers of one tenant: a fifth bought a
washer in the last 60 days (an order line each, plus older orders for others), half
granted push, a fiftieth are tagged staff. Two segments:

    washer-buyers-30d = all(purchased washers within P30D, consent push)
    reachable         = all(segment washer-buyers-30d, not(tag staff))

1. segment: `count_members` of `{"segment": "reachable"}` with the tenant's segments, as
   `GET /segments/{key}/count` counts it (customers in batches, facts loaded per batch);
2. inline: `count_members` of the same conditions written out in place, no segments;

alternating, `--rounds` of each (medians reported). The counts must agree. Then both are
evaluated over facts loaded beforehand (no database), alternating again: what naming a
segment costs without the database's noise, and how much of a count is evaluation.

    .venv/bin/python -m bench.bench_segments [--customers N] \
        [--output docs/benchmarks/segments.md]

Target: the segment within 1.1x of the inline conditions (naming a segment costs no
query and next to no evaluation); the absolute time is what `GET /segments/{key}/count`
takes, reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Engine, insert, text
from sqlmodel import SQLModel

from cloud.customers.models import ConsentEntry
from cloud.db import make_engine, migrate, session_scope
from cloud.scenarios.conditions import NO_SEGMENTS, Condition, SegmentBook, evaluate
from cloud.scenarios.facts import load_facts
from cloud.scenarios.membership import COUNT_BATCH, count_members
from cloud.scenarios.models import CustomerTag
from cloud.scenarios.segments import build_book
from cloud.segments.crud import list_segments, save_segment
from tests.support.postgres import fresh_database

TENANT = "bench"
NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
TARGET_RATIO = 1.1
CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)
BUYERS: dict[str, Any] = {"all": [{"purchased": {"category": "washers", "within": "P30D"}},
                                  {"consent": "push"}]}
REACHABLE: dict[str, Any] = {"all": [{"segment": "washer-buyers-30d"},
                                     {"not": {"tag": "staff"}}]}
INLINE: dict[str, Any] = {"all": [BUYERS, {"not": {"tag": "staff"}}]}


def populate(engine: Engine, *, customers: int, seed: int) -> None:
    rng = random.Random(seed)
    tables = SQLModel.metadata.tables
    with session_scope(engine) as session:
        connection = session.connection()
        connection.execute(insert(tables["customer"]), [
            {"tenant": TENANT, "public_id": f"cus_{i:032x}", "external_id": f"c{i}",
             "email": f"c{i}@example.com", "first_name": "Ana", "attributes": {},
             "created_at": NOW - timedelta(days=rng.randrange(0, 400)), "updated_at": NOW}
            for i in range(customers)
        ])
        ids = [row[0] for row in connection.execute(text("SELECT id FROM customer"))]
        connection.execute(insert(tables[CustomerTag.__tablename__]), [
            {"customer_id": cid, "tag": "staff", "added_at": NOW}
            for cid in rng.sample(ids, len(ids) // 50)])
        connection.execute(insert(tables[ConsentEntry.__tablename__]), [
            {"customer_id": cid, "channel": "push", "granted": True, "source": "app",
             "given_at": NOW - timedelta(days=30), "recorded_at": NOW - timedelta(days=30)}
            for cid in ids if rng.random() < 0.5])
        lines = []
        for cid in ids:
            if rng.random() < 0.2:
                lines.append(("washers", cid, NOW - timedelta(days=rng.randrange(0, 60))))
            if rng.random() < 0.3:
                lines.append(("fridges", cid, NOW - timedelta(days=rng.randrange(0, 700))))
        connection.execute(insert(tables["order_line"]), [
            {"tenant": TENANT, "order_id": f"o{number}", "line": 1, "customer_id": cid,
             "sku": f"{category}-1", "name": category, "category": category, "quantity": 1,
             "unit_price": "499.00", "currency": "EUR", "ordered_at": at}
            for number, (category, cid, at) in enumerate(lines)])
        save_segment(session, tenant=TENANT, key="washer-buyers-30d", name="buyers",
                     description="", conditions=BUYERS, now=NOW)
        save_segment(session, tenant=TENANT, key="reachable", name="reachable",
                     description="", conditions=REACHABLE, now=NOW)
        session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    customers: int
    members: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.customers / self.seconds


def count(engine: Engine, name: str, condition: Condition, segments: SegmentBook) -> Phase:
    begin = time.perf_counter()
    with session_scope(engine) as session:
        counts = count_members(session, tenant=TENANT, conditions={name: condition},
                               segments=segments, now=NOW)
    return Phase(name, counts.customers, counts.members[name], time.perf_counter() - begin)


def in_memory(engine: Engine, segments: SegmentBook, rounds: int) -> tuple[Phase, Phase]:
    """The segment and the inline conditions evaluated over facts loaded beforehand,
    alternating: the cost of naming a segment, without the database's noise."""
    with session_scope(engine) as session:
        ids = [row[0] for row in session.connection().execute(text("SELECT id FROM customer"))]
        facts = list(load_facts(session, customer_ids=ids, now=NOW).values())
    named = CONDITION.validate_python({"segment": "reachable"})
    inline = CONDITION.validate_python(INLINE)
    times: dict[str, list[float]] = {"segment": [], "inline": []}
    members: dict[str, int] = {}
    for _ in range(rounds):
        for name, condition, book in (("segment", named, segments),
                                      ("inline", inline, NO_SEGMENTS)):
            begin = time.perf_counter()
            members[name] = sum(evaluate(condition, one, {}, NOW, book) for one in facts)
            times[name].append(time.perf_counter() - begin)
    segment_phase, inline_phase = (
        Phase(f"in memory: {name} over loaded facts", len(facts), members[name],
              statistics.median(times[name]))
        for name in ("segment", "inline"))
    return segment_phase, inline_phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    with fresh_database("vitrina_bench_segments") as url:
        migrate(url)
        engine = make_engine(url)
        populate(engine, customers=args.customers, seed=args.seed)
        with session_scope(engine) as session:
            segments = build_book(list_segments(session, tenant=TENANT))
        by_segment, inline = [], []
        for _ in range(args.rounds):
            by_segment.append(count(engine, "segment", CONDITION.validate_python(
                {"segment": "reachable"}), segments))
            inline.append(count(engine, "inline", CONDITION.validate_python(INLINE),
                                NO_SEGMENTS))
        memory, memory_inline = in_memory(engine, segments, args.rounds)
        engine.dispose()
    phases = (*by_segment, *inline, memory, memory_inline)
    if {phase.members for phase in phases} != {by_segment[0].members}:
        raise SystemExit("the segment and the inline conditions counted different members")
    seconds = statistics.median(phase.seconds for phase in by_segment)
    base = statistics.median(phase.seconds for phase in inline)
    ratio = seconds / base
    load = os.getloadavg()[0]
    lines = [
        "# Segment benchmarks", "",
        "## Counting a segment's members (`bench/bench_segments.py`)", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, PostgreSQL on the same machine (load average "
        f"{load:.1f} at the end of the run). {args.rounds} rounds of each, alternating.", "",
        f"Data: {args.customers:,} customers; the segment `reachable` names "
        "`washer-buyers-30d` (washers bought within 30 days, push consent) and leaves out "
        f"staff; customers in batches of {COUNT_BATCH}, facts loaded per batch (customers, "
        "consents, tags, purchases).", "",
        "| phase | customers | members | seconds | customers/s | vs inline |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for phase in phases:
        lines.append(f"| {phase.name} | {phase.customers:,} | {phase.members:,} | "
                     f"{phase.seconds:.2f} | {phase.rate:,.0f} | {phase.seconds / base:.2f} |")
    evaluation = memory.seconds / memory_inline.seconds
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    lines += ["", f"Target: the segment within {TARGET_RATIO}x of the inline conditions: "
              f"**{verdict}**, {ratio:.2f}x (medians of the counts: {seconds:.2f} s against "
              f"{base:.2f} s; {args.customers / seconds:,.0f} customers/s). Over loaded facts "
              f"the segment evaluates at {evaluation:.2f}x the inline conditions' time, and "
              f"evaluation is {memory.seconds / seconds:.0%} of a count: the rest is reading "
              "the customers and their facts.", ""]
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report)
    sys.exit(0)


if __name__ == "__main__":
    main()
