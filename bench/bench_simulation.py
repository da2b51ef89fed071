"""A dry run of a month of a large shop, against replaying the same triggers through the
live engine, in the same run (PostgreSQL on this machine).

A fresh database (migrated) holds `--customers` customers of one tenant (80% with email
consent, 60% with location consent), 20 stores, an offer with coupons, a month and a half
of washer orders before the period and `--days` days of recorded triggers: visits of the
location-consenting customers (enter, dwell, exit; two a month on average), orders (with
their lines and spend triggers) and app opens. The scenario is the shop's cross-sell: a
visit of a recent washer buyer, an email with a coupon, a wait for an order, credit.

1. measured: `cloud.simulation.dry_run.simulate` over the period, start to end: the
   scratch database built from the live one, the worker's rounds on the virtual clock,
   the report;
2. baseline: the same period's triggers handled by the live engine in the live
   database (`process_triggers` in batches, then the due waits), with the scenario
   active: what a worker pays for the same triggers, with no clock to keep.

    .venv/bin/python -m bench.bench_simulation [--customers N] [--days N] \
        [--output docs/benchmarks/simulation.md]

Target: 30 days of 100,000 customers in under a minute.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text, update
from sqlmodel import SQLModel

from cloud.bulk import insert_rows
from cloud.db import make_engine, migrate, session_scope
from cloud.offers.crud import upsert_offer
from cloud.offers.models import OfferCreate
from cloud.places.crud import put_store
from cloud.places.models import StoreCreate
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.spec import ScenarioSpec
from cloud.scenarios.timers import wake_due_journeys
from cloud.simulation.dry_run import simulate
from cloud.simulation.replay import Period
from cloud.simulation.report import SimulationReport
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec
from tests.cloud.simulation.history import CONFIG, SPEC_DOCUMENT
from tests.support.postgres import fresh_database

TENANT = "bench"
UNTIL = datetime(2026, 11, 1, tzinfo=UTC)
TARGET_S = 60.0
STORES = 20
#: The tests' cross-sell over recorded history, as a large shop runs it: a tenth held out,
#: one such email a week, a visit's email worth two hours.
SPEC = ScenarioSpec.model_validate({
    **SPEC_DOCUMENT, "holdout_percent": 10, "caps": [{"max": 1, "per": "P7D"}],
    "steps": [{**SPEC_DOCUMENT["steps"][0], "expires_after": "PT2H"},
              *SPEC_DOCUMENT["steps"][1:]],
})
TABLES = SQLModel.metadata.tables


def table(name: str) -> Any:
    return TABLES[name]


def populate(engine: Engine, *, customers: int, days: int, seed: int) -> int:
    """The shop and its history; returns how many triggers the period holds."""
    rng = random.Random(seed)
    since = UNTIL - timedelta(days=days)
    joined = since - timedelta(days=400)
    with session_scope(engine) as session:
        for number in range(STORES):
            put_store(session, tenant=TENANT, key=f"s{number}", now=joined,
                      data=StoreCreate(name=f"Store {number}", time_zone="Europe/Madrid"))
        save_template(session, tenant=TENANT, key="dryer", now=joined,
                      spec=TemplateSpec.model_validate({
                          "channel": "email", "locale": "en-GB",
                          "parts": {"subject": "A dryer for you",
                                    "html": "<p>{{ coupon.code }}</p>{{ unsubscribe_url }}",
                                    "text": "{{ coupon.code }} {{ unsubscribe_url }}"}}))
        upsert_offer(session, tenant=TENANT, key="dryer-20", now=joined,
                     data=OfferCreate.model_validate({
                         "name": "Dryers 20% off", "discount_percent": 20,
                         "category": "dryers", "product_name": "Dryer",
                         "product_url": "https://shop.example/d",
                         "image_url": "https://shop.example/d.jpg", "price": "549.00",
                         "currency": "EUR", "valid_from": "2026-01-01T00:00:00Z"}))
        session.commit()
    rows: list[dict[str, Any]] = [{
        "tenant": TENANT, "public_id": f"cus_{secrets.token_hex(8)}",
        "external_id": f"c{number}", "email": f"c{number}@example.com", "phone": None,
        "first_name": None, "last_name": None, "birth_date": None, "locale": "en-GB",
        "time_zone": "Europe/Madrid", "attributes": {}, "anonymous": False,
        "created_at": joined, "updated_at": joined,
    } for number in range(customers)]
    with engine.begin() as connection:
        ids = [int(row[0]) for row in insert_rows(connection, table("customer"), rows,
                                                  returning=[table("customer").c.id])]
    consents, lines, triggers = [], [], []
    for cid in ids:
        located = rng.random() < 0.6
        for channel, granted in (("email", rng.random() < 0.8), ("location_marketing", located)):
            if granted:
                consents.append({"customer_id": cid, "channel": channel, "granted": True,
                                 "source": "app", "given_at": joined, "recorded_at": joined})
        if rng.random() < 0.3:  # a washer in the six weeks before
            lines.append(_line(cid, since - timedelta(minutes=rng.randint(1, 60 * 24 * 45)),
                               "washers", f"h{cid}"))
        if located:
            for visit in range(_poisson(rng, 2.0 * days / 30)):
                at = _opening_hours(rng, since, days)
                store = f"s{rng.randrange(STORES)}"
                for kind, shift in (("presence.enter", 0), ("presence.dwell", 300),
                                    ("presence.exit", 1500)):
                    triggers.append(_trigger(cid, kind, at + timedelta(seconds=shift),
                                             f"p:{cid}:{visit}:{kind}", {
                                                 "store": store, "zone": "entrance",
                                                 "gateway": "g1", "dwell_s": shift}))
        if rng.random() < 0.15 * days / 30:
            at = _opening_hours(rng, since, days)
            category = rng.choice(("dryers", "washers", "fridges"))
            lines.append(_line(cid, at, category, f"o{cid}"))
            triggers.append(_trigger(cid, "order.created", at, f"webhook:o{cid}", {
                "categories": [category], "skus": [f"{category}-1"], "order_id": f"o{cid}",
                "total": "499.00", "currency": "EUR", "coupons": 0}))
        for opened in range(_poisson(rng, 1.0 * days / 30)):
            triggers.append(_trigger(cid, "app.opened", _opening_hours(rng, since, days),
                                     f"app:{cid}:{opened}", {}))
    with engine.begin() as connection:
        # Triggers in the order they were recorded, as the orchestrator numbers them.
        triggers.sort(key=lambda row: row["recorded_at"])
        for name, batch in (("consent", consents), ("order_line", lines),
                            ("scenario_trigger", triggers)):
            for start in range(0, len(batch), 50_000):
                insert_rows(connection, table(name), batch[start:start + 50_000])
        connection.execute(text("ANALYZE"))
    return len(triggers)


def _poisson(rng: random.Random, mean: float) -> int:
    count, limit, product = 0, pow(2.718281828, -mean), rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _opening_hours(rng: random.Random, since: datetime, days: int) -> datetime:
    day = since + timedelta(days=rng.randrange(days))
    return day + timedelta(hours=8, seconds=rng.randrange(13 * 3600))


def _line(cid: int, at: datetime, category: str, order: str) -> dict[str, Any]:
    return {"tenant": TENANT, "order_id": order, "line": 1, "customer_id": cid,
            "sku": f"{category}-1", "name": "Appliance", "category": category,
            "quantity": 1, "unit_price": "499.00", "currency": "EUR", "ordered_at": at}


def _trigger(cid: int, kind: str, at: datetime, key: str,
             attributes: dict[str, Any]) -> dict[str, Any]:
    return {"tenant": TENANT, "customer_id": cid, "kind": kind, "occurred_at": at,
            "recorded_at": at + timedelta(seconds=1), "source_key": key,
            "attributes": attributes, "processed_at": at + timedelta(seconds=2)}


def dry_run(engine: Engine, period: Period) -> tuple[float, SimulationReport]:
    begin = time.perf_counter()
    with session_scope(engine) as session:
        report = simulate(session, tenant=TENANT, spec=SPEC, period=period, config=CONFIG)
        session.rollback()
    return time.perf_counter() - begin, report


def live_replay(engine: Engine, period: Period) -> tuple[float, int]:
    """The period's triggers through the live engine, with the scenario active; returns
    the seconds it took and the journeys it started."""
    with session_scope(engine) as session:
        save_scenario(session, tenant=TENANT, spec=SPEC, now=period.since)
        session.execute(update(table("scenario_trigger")).values(processed_at=None))
        session.commit()
    # Statistics for the table as it is now: every trigger waiting (the worker's claim
    # would otherwise plan for the few it usually finds).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE scenario_trigger"))
    catalog, batch = Catalog(), CONFIG.settings.trigger_batch
    begin = time.perf_counter()
    for step, now in ((process_triggers, period.until),
                      (wake_due_journeys, period.until + timedelta(days=1))):
        while True:
            with session_scope(engine) as session:
                done = step(session, catalog=catalog, config=CONFIG, now=now, limit=batch)
                session.commit()
            if done.triggers + done.woken < batch:
                break
    seconds = time.perf_counter() - begin
    with session_scope(engine) as session:
        started = session.execute(select(func.count()).select_from(table("journey"))).scalar()
    return seconds, int(started or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    period = Period(UNTIL - timedelta(days=args.days), UNTIL)
    with fresh_database("vitrina_bench_simulation") as url:
        migrate(url)
        engine = make_engine(url)
        triggers = populate(engine, customers=args.customers, days=args.days, seed=args.seed)
        simulated_s, report = dry_run(engine, period)
        live_s, live_journeys = live_replay(engine, period)
        engine.dispose()
    ratio = simulated_s / live_s
    verdict = "met" if simulated_s < TARGET_S else "missed"
    sends = sum(row.sends for row in report.sends)
    lines = [
        "# Dry-run benchmark (`bench/bench_simulation.py`)", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, PostgreSQL on the same machine (load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run).", "",
        f"Data: {args.customers:,} customers, {STORES} stores, {args.days} days holding "
        f"{triggers:,} recorded triggers (visits, orders, app opens), of which "
        f"{report.triggers:,} are replayed to the cross-sell scenario (visits, and orders "
        "of the customers who visited).", "",
        "| phase | seconds | journeys | vs live replay |",
        "| --- | ---: | ---: | ---: |",
        f"| live engine over the same triggers (baseline) | {live_s:.1f} | "
        f"{live_journeys:,} | 1.00 |",
        f"| dry run, start to end | {simulated_s:.1f} | {report.entries + report.held_out:,} "
        f"| {ratio:.2f} |",
        f"| of which the worker's rounds on the virtual clock | {report.rounds_s:.1f} | | "
        f"{report.rounds_s / live_s:.2f} |",
        "",
        f"The dry run started {report.entries:,} journeys ({report.held_out:,} held out), "
        f"queued {sends:,} emails ({report.holds:,} held for quiet hours), "
        f"{report.capped:,} capped, issued {report.coupons_issued:,} coupons.", "",
        f"Target: {args.days} days of {args.customers:,} customers in under "
        f"{TARGET_S:.0f} s: **{verdict}** ({simulated_s:.1f} s).", "",
    ]
    output = "\n".join(lines)
    print(output)
    if args.output:
        args.output.write_text(output)
    sys.exit(0)


if __name__ == "__main__":
    main()
