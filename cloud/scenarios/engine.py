"""Running scenarios from triggers: they start, resume and end journeys, which then run
their steps (`cloud.scenarios.steps`) until a wait, whose timer any worker may pick up
later (`cloud.scenarios.timers`).

Triggers and timers are claimed their work with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite
serialises writers), so any number of workers share it and each trigger and each timer
is handled by exactly one. A trigger's effects and its "processed" mark commit together;
a worker that dies mid-batch leaves the batch to the next one, and journeys, coupons,
credits and messages are all keyed by journey and step, so running a step twice
changes nothing the second time.

A batch is handled with as few round trips as its order allows: what triggers decide is
read from state loaded once per batch (customer facts, open journeys, what send steps
need), journeys, messages and journal lines are written in one statement each, and the
whole batch runs in one savepoint, handled again one trigger at a time only if it fails.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud.bulk import insert_rows, one_of
from cloud.customers.models import Customer
from cloud.metrics import SCENARIO_TRIGGERS
from cloud.scenarios.assignment import assign_variant, in_holdout
from cloud.scenarios.catalog import Catalog, LoadedScenario, TenantCatalog
from cloud.scenarios.conditions import evaluate, matches_attributes, segments_reached
from cloud.scenarios.models import (
    OPEN_STATUSES,
    Journey,
    JourneyStatus,
)
from cloud.scenarios.run import JOURNEY_TABLE, EngineConfig, Run, RunReport, attempt, journey_row
from cloud.scenarios.spec import (
    Entry,
    Reentry,
    WaitForEventStep,
    WaitStep,
)
from cloud.scenarios.steps import advance, entered_at, finish, following, step_of, wait_started
from cloud.triggers import Trigger, TriggerKind, claim_triggers

log = logging.getLogger(__name__)


def process_triggers(
    session: Session, *, catalog: Catalog, config: EngineConfig, now: datetime, limit: int
) -> RunReport:
    """Handle up to `limit` unprocessed triggers, oldest first, in the caller's transaction
    (the caller commits).

    A tenant's share of the batch is decided in memory and written in bulk inside one
    savepoint; should anything in it fail, the savepoint is rolled back and the share is
    handled again one trigger at a time, each in its own savepoint, so one bad trigger
    costs only itself (it is logged and marked processed)."""
    report = RunReport()
    rows = claim_triggers(session, now=now, limit=limit)
    if not rows:
        return report
    report.triggers = len(rows)
    for tenant in sorted({row.tenant for row in rows}):
        tenant_catalog = catalog.tenant(session, tenant)
        relevant = [
            row for row in rows if row.tenant == tenant and (
                row.kind in tenant_catalog.by_entry or row.kind in tenant_catalog.resuming_kinds
            )
        ]
        # Counted, not compared: `row in relevant` would compare models field by field,
        # quadratic in the batch size.
        unmatched = sum(row.tenant == tenant for row in rows) - len(relevant)
        if unmatched:
            SCENARIO_TRIGGERS.labels(outcome="unmatched").inc(unmatched)
        if relevant:
            _lock_customers(session, sorted({row.customer_id for row in relevant}))
            _handle_share(session, rows=relevant, catalog=tenant_catalog, config=config,
                          now=now, report=report)
    return report


def _handle_share(
    session: Session, *, rows: Sequence[Trigger], catalog: TenantCatalog,
    config: EngineConfig, now: datetime, report: RunReport,
) -> None:
    if attempt(session, config, now, report, partial(_run_batch, catalog=catalog, rows=rows),
                facts=catalog.facts):
        SCENARIO_TRIGGERS.labels(outcome="handled").inc(len(rows))
        return
    log.warning("a batch of %d triggers failed; handling them one by one", len(rows))
    for row in rows:
        if attempt(session, config, now, report,
                    partial(_run_batch, catalog=catalog, rows=[row]), facts=catalog.facts):
            SCENARIO_TRIGGERS.labels(outcome="handled").inc()
        else:  # one bad trigger must not block every later one
            log.error("trigger %s (%s) failed; marked processed", row.id, row.kind)
            report.failed += 1
            SCENARIO_TRIGGERS.labels(outcome="failed").inc()


def _run_batch(run: Run, *, catalog: TenantCatalog, rows: Sequence[Trigger]) -> None:
    _Batch(run, catalog).run(rows)


def _lock_customers(session: Session, customer_ids: Sequence[int]) -> None:
    """Serialise decisions per customer across workers (in id order: no deadlocks), so
    "only if no journey is running" cannot be true for two workers at once, and the
    journeys a batch looked up cannot change under it."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(
            select(Customer.id).where(one_of(session, Customer.id, customer_ids))
            .order_by(col(Customer.id)).with_for_update()
        ).all()


@dataclass(frozen=True, slots=True)
class _Start:
    """A journey decided on, not yet written."""

    trigger: Trigger
    scenario: LoadedScenario
    entry_key: str
    held_out: bool
    #: When it was decided (`Run.now` then): the journey starts then.
    at: datetime

    @property
    def quiet(self) -> bool:
        """Whether starting changes nothing a later trigger could read but the journey
        itself: held out, or first waiting (no tag, message, coupon or credit yet)."""
        return self.held_out or isinstance(self.scenario.spec.steps[0],
                                           WaitStep | WaitForEventStep)


class _Batch:
    """Triggers of one tenant, in order, with as few round trips as that order allows.

    What a trigger decides is read from state loaded once for the whole batch: customer
    facts, the customers' open journeys, when each last entered each scenario. Journeys
    to start are collected and inserted together. The collection is written out early
    only when a later trigger could see a difference: it may resume or end a journey of
    a customer with starts still pending, or one of those starts runs a step that
    changes the customer's facts. So each trigger sees every effect of the ones before
    it, exactly as if handled alone.
    """

    def __init__(self, run: Run, catalog: TenantCatalog) -> None:
        self._run, self._catalog = run, catalog
        self._open: dict[int, list[Journey]] = defaultdict(list)
        self._last_entry: dict[tuple[str, int], datetime] = {}
        self._pending: dict[str, _Start] = {}
        self._pending_for: dict[int, list[_Start]] = defaultdict(list)

    def run(self, rows: Sequence[Trigger]) -> None:
        # Entry filters read only the trigger: scenarios it cannot enter cost no lookups.
        entering = [
            tuple(scenario for scenario in self._catalog.by_entry.get(TriggerKind(row.kind), ())
                  if entry_matches(scenario.spec.entry, row))
            for row in rows
        ]
        self._load_open_journeys(rows, entering)
        self._load_last_entries(rows, entering)
        self._run.facts.preload(
            row.customer_id for row, scenarios in zip(rows, entering, strict=True)
            if scenarios or self._open.get(row.customer_id)
        )
        for trigger, scenarios in zip(rows, entering, strict=True):
            if self._must_start_before(trigger):
                self._start_pending()
            self._handle(trigger, scenarios)
        self._start_pending()

    # -- state loaded once ------------------------------------------------------------------

    def _load_open_journeys(
        self, rows: Sequence[Trigger], entering: Sequence[tuple[LoadedScenario, ...]]
    ) -> None:
        """Open journeys of every customer a trigger may resume, end, or be kept out of
        by one ("after_exit"), locked against the timer workers."""
        customers = sorted({
            row.customer_id for row, scenarios in zip(rows, entering, strict=True)
            if row.kind in self._catalog.resuming_kinds or any(
                scenario.spec.entry.reentry is Reentry.AFTER_EXIT for scenario in scenarios
            )
        })
        if not customers:
            return
        session = self._run.session
        found = session.exec(
            select(Journey).where(
                one_of(session, Journey.customer_id, customers),
                col(Journey.status).in_(OPEN_STATUSES),
            ).order_by(col(Journey.id)).with_for_update()
        )
        for journey in found:
            self._open[journey.customer_id].append(journey)

    def _load_last_entries(
        self, rows: Sequence[Trigger], entering: Sequence[tuple[LoadedScenario, ...]]
    ) -> None:
        """When each customer last entered each scenario with a cooldown."""
        keys = sorted({
            scenario.key for scenarios in entering for scenario in scenarios
            if scenario.spec.entry.cooldown is not None
        })
        if not keys:
            return
        customers = sorted({row.customer_id for row in rows})
        session = self._run.session
        found = session.exec(
            select(Journey.scenario_key, Journey.customer_id, func.max(Journey.started_at))
            .where(Journey.tenant == rows[0].tenant, one_of(session, Journey.scenario_key, keys),
                   one_of(session, Journey.customer_id, customers))
            .group_by(col(Journey.scenario_key), col(Journey.customer_id))
        )
        for key, customer_id, started in found:
            self._last_entry[(key, customer_id)] = started

    # -- one trigger ------------------------------------------------------------------------

    def _must_start_before(self, trigger: Trigger) -> bool:
        pending = self._pending_for.get(trigger.customer_id, [])
        return bool(pending) and (
            trigger.kind in self._catalog.resuming_kinds
            or not all(start.quiet for start in pending)
        )

    def _handle(self, trigger: Trigger, scenarios: tuple[LoadedScenario, ...]) -> None:
        self._run.decide_at(trigger.recorded_at)
        if trigger.kind in self._catalog.resuming_kinds:
            for journey in list(self._open.get(trigger.customer_id, ())):
                if journey.status in OPEN_STATUSES:
                    self._resume_or_exit(journey, trigger)
        for scenario in scenarios:
            if self._may_enter(scenario, trigger):
                self._decide_start(scenario, trigger)

    def _resume_or_exit(self, journey: Journey, trigger: Trigger) -> None:
        run = self._run
        loaded = self._catalog.scenarios.get(journey.scenario_key)
        if loaded is None or trigger.occurred_at < entered_at(journey):
            return
        spec = loaded.spec
        if trigger.kind in spec.exit_on:
            finish(journey, JourneyStatus.EXITED, f"exit:{trigger.kind}", run.now)
            run.log(journey, journey.step or "-", "exited", f"on {trigger.kind}")
            run.report.exited += 1
            return
        if journey.waiting_for != trigger.kind or journey.step is None:
            return
        step = step_of(spec, journey.step)
        since = wait_started(journey)
        if not isinstance(step, WaitForEventStep) or (since and trigger.occurred_at < since):
            return
        if not matches_attributes(step.where, trigger.attributes or {}):
            return
        journey.waiting_for, journey.wake_at = None, None
        journey.status = JourneyStatus.RUNNING
        journey.step = step.yes or following(spec, step.id)
        run.log(journey, step.id, "event", f"{trigger.kind} arrived")
        run.report.resumed += 1
        advance(run, journey, loaded, as_of=trigger.occurred_at)

    def _may_enter(self, scenario: LoadedScenario, trigger: Trigger) -> bool:
        entry, customer_id = scenario.spec.entry, trigger.customer_id
        if entry.reentry is Reentry.AFTER_EXIT and (any(
            journey.scenario_key == scenario.key and journey.status in OPEN_STATUSES
            for journey in self._open.get(customer_id, ())
        ) or any(  # pending starts that stay open are open journeys already
            start.scenario.key == scenario.key and not start.held_out
            for start in self._pending_for.get(customer_id, ())
        )):
            return False
        if entry.cooldown is not None:
            last = self._last_entry.get((scenario.key, customer_id))
            if last is not None and last > self._run.now - entry.cooldown:
                return False
        customer_facts = self._run.facts_of(customer_id)
        if customer_facts is None:
            return False  # erased meanwhile
        conditions = scenario.spec.conditions
        return conditions is None or evaluate(
            conditions, customer_facts, trigger.attributes or {}, self._run.now,
            scenario.segments,
        )

    def _decide_start(self, scenario: LoadedScenario, trigger: Trigger) -> None:
        tenant, key, customer_id = trigger.tenant, scenario.key, trigger.customer_id
        entry_key = (
            f"{tenant}:{key}:{customer_id}" if scenario.spec.entry.reentry is Reentry.ONCE
            else f"{tenant}:{key}:{customer_id}:t{trigger.id}"
        )
        if entry_key in self._pending:
            return  # once-only, and already about to start
        start = _Start(trigger=trigger, scenario=scenario, entry_key=entry_key,
                       held_out=in_holdout(scenario.spec, tenant, customer_id),
                       at=self._run.now)
        self._pending[entry_key] = start
        self._pending_for[customer_id].append(start)
        self._last_entry[(key, customer_id)] = self._run.now

    # -- starting journeys ------------------------------------------------------------------

    def _start_pending(self) -> None:
        """Start the journeys decided on. Each first runs, in memory, the steps that need
        no database (waits, branches), so most are inserted already waiting: one row
        each, in one statement, no update after. An entry key used before refuses a
        start (a replayed trigger, a once-only scenario). Journeys left at a step that
        acts then run on."""
        starts = list(self._pending.values())
        self._pending.clear()
        self._pending_for.clear()
        if not starts:
            return
        run = self._run
        journeys = [_new_journey(start) for start in starts]
        for start, journey in zip(starts, journeys, strict=True):
            run.decide_at(start.at)
            if start.held_out:
                run.log(journey, "-", "held_out", f"holdout {start.scenario.spec.holdout_percent}%")
            else:
                advance(run, journey, start.scenario, as_of=start.trigger.occurred_at,
                         database=False)
        inserted = _insert_journeys(run, journeys)
        run.prepare_sends(
            (journey, start.scenario) for start, journey in zip(starts, journeys, strict=True)
            if journey.entry_key in inserted and journey.status == JourneyStatus.RUNNING
        )
        for start, journey in zip(starts, journeys, strict=True):
            if journey.entry_key not in inserted:
                continue
            if start.held_out:
                run.report.held_out += 1
                continue
            run.report.started += 1
            if journey.status in OPEN_STATUSES:
                self._open[journey.customer_id].append(journey)
            if journey.status == JourneyStatus.RUNNING:
                run.decide_at(start.at)
                advance(run, journey, start.scenario, as_of=start.trigger.occurred_at)


def _new_journey(start: _Start) -> Journey:
    """The journey, its context saying what started it and which segment versions its
    conditions went by (`segments`, for the scenario's report)."""
    spec, trigger, held_out, now = start.scenario.spec, start.trigger, start.held_out, start.at
    tenant, customer_id = trigger.tenant, trigger.customer_id
    decided = segments_reached(spec.conditions, start.scenario.segments)
    return Journey(
        tenant=tenant, scenario_key=spec.key, scenario_version=start.scenario.version,
        customer_id=customer_id, entry_key=start.entry_key, entry_kind=trigger.kind,
        variant=assign_variant(spec, tenant, customer_id), holdout=held_out,
        status=JourneyStatus.HELD_OUT if held_out else JourneyStatus.RUNNING,
        step=spec.steps[0].id, started_at=now, updated_at=now,
        finished_at=now if held_out else None,
        context={
            "trigger": {**(trigger.attributes or {}), "kind": trigger.kind, "id": trigger.id},
            "entered_at": trigger.occurred_at.isoformat(),
            **({"segments": decided} if decided else {}),
        },
    )


def _insert_journeys(run: Run, journeys: Sequence[Journey]) -> set[str]:
    """Insert new journeys (one statement) unless their entry key was used before; the
    inserted ones get their ids, and the run writes what the batch changes in them
    afterwards (`Run.write_journeys`). Returns their entry keys."""
    written = {journey.entry_key: (journey, journey_row(journey)) for journey in journeys}
    rows = insert_rows(
        run.session.connection(), JOURNEY_TABLE, [row for _journey, row in written.values()],
        skip_conflicts_on=["entry_key"],
        returning=[JOURNEY_TABLE.c.id, JOURNEY_TABLE.c.entry_key],
    )
    for journey_id, entry_key in rows:
        journey, row = written[entry_key]
        journey.id = int(journey_id)
        run.inserted.append((journey, row))
    return {str(entry_key) for _id, entry_key in rows}


def entry_matches(entry: Entry, trigger: Trigger) -> bool:
    attributes = trigger.attributes or {}
    if not matches_attributes(entry.where, attributes):
        return False
    if entry.inactive_days is not None:
        return bool(attributes.get("days") == entry.inactive_days)
    if entry.date_field is not None:
        return bool(attributes.get("field") == entry.date_field)
    if entry.spend_crosses is not None:
        try:
            before, after = float(attributes["before"]), float(attributes["after"])
        except (KeyError, TypeError, ValueError):
            return False
        return before < float(entry.spend_crosses) <= after
    return True
