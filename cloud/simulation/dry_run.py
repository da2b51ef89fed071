"""One dry run, start to end: a scratch database with the tenant's state, the scenario
saved into it as the only one, the worker replayed over the period, the report read back.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator

from sqlmodel import Session

from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.conditions import FactKind
from cloud.scenarios.facts import VISIT_KINDS
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.schedule import ACTIVE_KINDS
from cloud.scenarios.spec import ScenarioSpec
from cloud.simulation.replay import CALENDAR_ENTRIES, Period, Progress, replay
from cloud.simulation.report import SimulationReport, build_report
from cloud.simulation.scratch import CopyPlan, copy_segments, copy_state, scratch_engine
from cloud.triggers import TriggerKind


def simulate(
    live: Session, *, tenant: str, spec: ScenarioSpec, period: Period, config: EngineConfig,
    sample_size: int = 20, seed: int = 0, progress: Progress | None = None,
) -> SimulationReport:
    """Run `spec` over `period` of `tenant`'s history; nothing is sent and the live
    database is only read (in `live`'s transaction)."""
    scratch = scratch_engine()
    try:
        copy_segments(live, scratch, tenant)
        with Session(scratch) as session:
            save_scenario(session, tenant=tenant, spec=spec, now=period.since)
            session.commit()
            catalog = Catalog().tenant(session, tenant)
        reacting = frozenset(kind.value for kind in (*catalog.by_entry, *catalog.resuming_kinds))
        entry_kinds = (None if spec.entry.event in CALENDAR_ENTRIES
                       else frozenset(kind.value for kind in catalog.by_entry))
        plan = CopyPlan(tenant=tenant, since=period.since, until=period.until,
                        scenario_key=spec.key, reacting_kinds=reacting,
                        fact_kinds=_fact_kinds(spec, catalog.facts), entry_kinds=entry_kinds)
        timelines = copy_state(live, scratch, plan)
        started = time.monotonic()
        with _uncollected():
            replay(scratch, facts=timelines.facts, events=timelines.events, config=config,
                   spec=spec, period=period, progress=progress)
        return build_report(
            live, scratch, tenant=tenant, scenario_key=spec.key, until=period.until,
            timelines=timelines, elapsed_s=time.monotonic() - started,
            sample_size=sample_size, seed=seed,
        )
    finally:
        scratch.dispose()



@contextlib.contextmanager
def _uncollected() -> Iterator[None]:
    """Keep what exists now out of the cycle collector's passes while the rounds run: the
    period's rows (hundreds of thousands for a month of a large shop) live until the
    end, and each full pass over them cost the rounds a few seconds. Objects made
    meanwhile are collected as usual; the frozen ones go back to the collector after."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _fact_kinds(spec: ScenarioSpec, facts: frozenset[FactKind]) -> frozenset[str]:
    """The trigger kinds the engine reads as facts for `spec`: visits for "last visit"
    conditions, every kind of activity for lapses."""
    kinds: set[str] = set()
    if FactKind.VISITS in facts:
        kinds.update(VISIT_KINDS)
    if spec.entry.event is TriggerKind.INACTIVITY:
        kinds.update(ACTIVE_KINDS)
    return frozenset(kinds)
