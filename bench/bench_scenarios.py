"""Scenario trigger evaluation on PostgreSQL, against claiming the same triggers with no
scenarios, in the same run.

A fresh database (migrated) holds `--customers` customers of one tenant (a third tagged,
some with consents and profile attributes) and `--triggers` unprocessed triggers of
the kinds scenarios enter on, with a store and an amount in their attributes.

1. baseline: `process_triggers` with the scenarios moved to another tenant: claim a
   batch (SKIP LOCKED), find nothing interested, mark the batch processed, commit: the
   floor any engine pays;
2. measured: the same trigger rows (marked unprocessed again, journeys deleted, tables
   vacuumed) with 100 active scenarios spread over 10 entry kinds, each with an
   attribute filter on the store and conditions on tags, profile and spend. A share of
   the triggers matches and starts a journey whose first step is a wait: the journey
   row, its log line and the reentry checks are part of the measured cost;
   baseline and measured rounds alternate, `--rounds` of each (medians reported);
3. replayed: the measured triggers once more with their journeys kept, so every start
   is refused by its entry key;
4. in memory: the entry matching and condition evaluation of phase 2 alone, over facts
   loaded beforehand (`load_facts`), no database.

    .venv/bin/python -m bench.bench_scenarios [--triggers N] [--customers N] \
        [--output docs/benchmarks/scenarios.md]

Target: >= 5,000 triggers/s with 100 active scenarios.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, text
from sqlmodel import Session, SQLModel, select

from cloud.customers.models import ConsentEntry
from cloud.db import make_engine, migrate, session_scope
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.conditions import evaluate
from cloud.scenarios.engine import entry_matches, process_triggers
from cloud.scenarios.facts import load_facts
from cloud.scenarios.models import CustomerTag, Journey
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.settings import ScenarioSettings
from cloud.triggers import Trigger, TriggerKind
from tests.support.postgres import fresh_database

TENANT = "bench"
NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
TARGET = 5_000
SCENARIOS = 100
STORES = 10
#: The kinds the 100 scenarios enter on (10 each); triggers are drawn from these.
KINDS = (
    TriggerKind.PRESENCE_ENTER, TriggerKind.PRESENCE_DWELL, TriggerKind.GEOFENCE_ENTER,
    TriggerKind.CART_ABANDONED, TriggerKind.ORDER_CREATED, TriggerKind.MESSAGE_OPENED,
    TriggerKind.MESSAGE_CLICKED, TriggerKind.APP_OPENED, TriggerKind.NEWSLETTER_SIGNUP,
    TriggerKind.COUPON_REDEEMED,
)
BATCH = ScenarioSettings().trigger_batch
CONFIG = EngineConfig(settings=ScenarioSettings(),
                      links=Links(base_url="https://t.example", secret="s" * 32))


def scenario_document(index: int) -> dict[str, Any]:
    kind = KINDS[index % len(KINDS)]
    conditions: list[dict[str, Any]] = [
        {"not": {"tag": "staff"}},
        {"any": [{"tag": f"seg{index % 5}"},
                 {"profile": "attributes.tier", "op": "in", "value": ["gold", "silver"]}]},
    ]
    if index % 3 == 0:
        conditions.append({"spend": {"op": "lt", "value": "10000"}})
    if index % 4 == 0:
        conditions.append({"since": {"event": "signup", "more_than": "P1D"}})
    return {
        "key": f"s{index:03d}", "name": f"scenario {index}",
        "entry": {"event": kind.value, "reentry": "always",
                  "where": [{"attribute": "store", "value": f"store{index % STORES}"},
                            {"attribute": "amount", "op": "gte", "value": 20}]},
        "conditions": {"all": conditions},
        "exit_on": ["order.created"] if kind is TriggerKind.CART_ABANDONED else [],
        "steps": [{"id": "pause", "type": "wait", "for": "P1D"},
                  {"id": "tag", "type": "tag", "add": [f"done{index}"]}],
    }


def populate(engine: Engine, *, customers: int, triggers: int, seed: int) -> None:
    rng = random.Random(seed)
    with session_scope(engine) as session:
        connection = session.connection()
        connection.execute(insert(SQLModel.metadata.tables["customer"]), [
            {"tenant": TENANT, "external_id": f"c{i}", "email": f"c{i}@example.com",
             "first_name": "Ana", "attributes": {"tier": rng.choice(["gold", "silver", "basic",
                                                                   "basic", "basic"])},
             "created_at": NOW - timedelta(days=rng.randrange(0, 400)), "updated_at": NOW}
            for i in range(customers)
        ])
        ids = [row[0] for row in connection.execute(text("SELECT id FROM customer"))]
        tags = [{"customer_id": cid, "tag": tag, "added_at": NOW} for cid in ids
                for tag in sorted({f"seg{rng.randrange(5)}", "newsletter"})
                if rng.random() < 0.3]
        tags += [{"customer_id": cid, "tag": "staff", "added_at": NOW}
                 for cid in rng.sample(ids, len(ids) // 50)]
        connection.execute(insert(SQLModel.metadata.tables[CustomerTag.__tablename__]), tags)
        connection.execute(insert(SQLModel.metadata.tables[ConsentEntry.__tablename__]), [
            {"customer_id": cid, "channel": "email", "granted": True, "source": "web",
             "given_at": NOW - timedelta(days=30), "recorded_at": NOW - timedelta(days=30)}
            for cid in ids if rng.random() < 0.5
        ])
        connection.execute(insert(SQLModel.metadata.tables[Trigger.__tablename__]), [
            {"tenant": TENANT, "customer_id": rng.choice(ids), "kind": rng.choice(KINDS).value,
             "occurred_at": NOW, "recorded_at": NOW, "source_key": f"bench:{i}",
             "attributes": {"store": f"store{rng.randrange(STORES)}",
                            "amount": rng.choice([5, 10, 25, 50, 120])}}
            for i in range(triggers)
        ])
        session.commit()


def save_scenarios(engine: Engine) -> None:
    with session_scope(engine) as session:
        for index in range(SCENARIOS):
            save_scenario(session, tenant=TENANT,
                          spec=ScenarioSpec.model_validate(scenario_document(index)), now=NOW)
        session.commit()


def scenarios_to(engine: Engine, tenant: str) -> None:
    """Hand the scenarios to `tenant`: away from the triggers' tenant, nothing matches."""
    with engine.begin() as connection:
        connection.execute(text("UPDATE scenario SET tenant = :tenant"), {"tenant": tenant})


def reset(engine: Engine, *, keep_journeys: bool = False) -> None:
    """Triggers unprocessed again (and vacuumed); journeys gone unless kept. Emptied by
    TRUNCATE, not DELETE and ANALYZE: statistics saying "no rows" would have PostgreSQL
    check each new journal line's journey by scanning the table, not by its primary
    key, as the table grows within the round (no production table is analyzed empty
    and then filled in one transaction)."""
    with engine.begin() as connection:
        connection.execute(text("UPDATE scenario_trigger SET processed_at = NULL"))
        if not keep_journeys:
            connection.execute(text("TRUNCATE journey_log, journey"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE scenario_trigger"))


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    triggers: int
    seconds: float
    started: int

    @property
    def rate(self) -> float:
        return self.triggers / self.seconds


def drain(engine: Engine, name: str) -> Phase:
    catalog = Catalog()
    handled = started = 0
    begin = time.perf_counter()
    while True:
        with session_scope(engine) as session:
            report = process_triggers(session, catalog=catalog, config=CONFIG, now=NOW,
                                      limit=BATCH)
            session.commit()
        if report.triggers == 0:
            break
        handled += report.triggers
        started += report.started + report.held_out
    return Phase(name, handled, time.perf_counter() - begin, started)


def in_memory(engine: Engine, rounds: int) -> tuple[Phase, int]:
    """Entry matching and conditions over preloaded facts, as `_handle_trigger` does them."""
    with session_scope(engine) as session:
        catalog = Catalog().tenant(session, TENANT)
        triggers = list(session.exec(select(Trigger)).all())
        facts = load_facts(session, customer_ids={row.customer_id for row in triggers}, now=NOW)
    matched = 0
    evaluate_fn: Callable[..., bool] = evaluate
    begin = time.perf_counter()
    for _ in range(rounds):
        for row in triggers:
            customer = facts[row.customer_id]
            for scenario in catalog.by_entry.get(TriggerKind(row.kind), ()):
                if not entry_matches(scenario.spec.entry, row):
                    continue
                condition = scenario.spec.conditions
                if condition is None or evaluate_fn(condition, customer, row.attributes, NOW):
                    matched += 1
    seconds = time.perf_counter() - begin
    return Phase("in memory", len(triggers) * rounds, seconds, matched // rounds), matched


def journeys(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(Journey.id)).all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--triggers", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    with fresh_database("vitrina_bench_scenarios") as url:
        migrate(url)
        engine = make_engine(url)
        populate(engine, customers=args.customers, triggers=args.triggers, seed=args.seed)
        save_scenarios(engine)
        baselines, measured = [], []
        for _ in range(args.rounds):
            scenarios_to(engine, "elsewhere")
            reset(engine)
            baselines.append(drain(engine, "baseline"))
            scenarios_to(engine, TENANT)
            reset(engine)
            measured.append(drain(engine, "100 scenarios"))
        reset(engine, keep_journeys=True)
        replayed = drain(engine, "100 scenarios, replayed (no new journeys)")
        memory, _ = in_memory(engine, rounds=3)
        total_journeys = journeys(engine)
        engine.dispose()
    base = statistics.median(phase.rate for phase in baselines)
    rate = statistics.median(phase.rate for phase in measured)
    started = measured[0].started
    load = os.getloadavg()[0]
    lines = [
        "# Scenario benchmarks", "",
        "## Trigger evaluation with 100 active scenarios (`bench/bench_scenarios.py`)", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, PostgreSQL on the same machine (load average "
        f"{load:.1f} at the end of the run). {args.rounds} rounds of baseline and measured, "
        "alternating.", "",
        f"Data: {args.customers:,} customers, {args.triggers:,} triggers over {len(KINDS)} "
        f"kinds and {STORES} stores; {SCENARIOS} scenarios ({SCENARIOS // len(KINDS)} per "
        "kind), each filtering the store and an amount and testing tags, profile, spend "
        f"and signup age; batches of {BATCH} triggers per transaction.", "",
        "| phase | triggers | triggers/s | journeys started | vs baseline |",
        "| --- | --- | --- | --- | --- |",
    ]
    for phase in (*baselines, *measured, replayed):
        lines.append(f"| {phase.name} | {phase.triggers:,} | {phase.rate:,.0f} | "
                     f"{phase.started:,} | {phase.rate / base:.2f} |")
    lines.append(f"| in memory: entry filters + conditions | {memory.triggers:,} | "
                 f"{memory.rate:,.0f} | ({memory.started:,} matches per pass) | "
                 f"{memory.rate / base:.2f} |")
    verdict = "met" if rate >= TARGET else "missed"
    lines += ["", f"Target: >= {TARGET:,} triggers/s with {SCENARIOS} active scenarios: "
              f"**{verdict}**, median {rate:,.0f} triggers/s ({rate / TARGET:.2f}x the "
              f"target; {rate / base:.2f}x the median bare claim-and-mark baseline of "
              f"{base:,.0f}/s). {started / args.triggers:.1%} of triggers started "
              f"a journey; {total_journeys:,} journeys in all.", ""]
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report)
    sys.exit(0)


if __name__ == "__main__":
    main()
