"""Running scenarios: triggers start, resume and end journeys; journeys run their steps
until a wait, whose timer any worker may pick up later.

Both entry points claim their work with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite
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

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Table, func
from sqlmodel import Session, SQLModel, col, select

from cloud.bulk import insert_rows, one_of, update_rows
from cloud.customers.models import Customer
from cloud.messages.queue import MessageBatch, PendingMessage
from cloud.metrics import SCENARIO_STEPS, SCENARIO_TRIGGERS
from cloud.scenarios.actions import (
    WEBHOOK_QUEUED,
    loyalty_step,
    remove_from_list_step,
    tag_step,
    webhook_step,
)
from cloud.scenarios.catalog import Catalog, LoadedScenario, TenantCatalog
from cloud.scenarios.conditions import CustomerFacts, FactKind, evaluate, matches_attributes
from cloud.scenarios.facts import load_facts
from cloud.scenarios.lookups import Lookups
from cloud.scenarios.models import (
    OPEN_STATUSES,
    Journey,
    JourneyLog,
    JourneyStatus,
)
from cloud.scenarios.sending import (
    Links,
    StepResult,
    cap_window,
    issue_coupon_step,
    send_step,
    store_key,
)
from cloud.scenarios.spec import (
    END,
    BranchStep,
    Entry,
    IssueCouponStep,
    LoyaltyCreditStep,
    Reentry,
    RemoveFromListStep,
    ScenarioSpec,
    SendStep,
    TagStep,
    WaitForEventStep,
    WaitStep,
    WebhookStep,
)
from cloud.settings import ScenarioSettings
from cloud.triggers import Trigger, TriggerKind, claim_triggers

log = logging.getLogger(__name__)

JOURNEY_TABLE: Table = SQLModel.metadata.tables[Journey.__tablename__]
JOURNEY_LOG_TABLE: Table = SQLModel.metadata.tables[JourneyLog.__tablename__]
#: Steps one journey may run without waiting: a branch looping on itself is a mistake
#: that must not hold a worker.
MAX_STEPS_PER_RUN = 100


@dataclass(frozen=True, slots=True)
class EngineConfig:
    settings: ScenarioSettings
    links: Links


@dataclass(slots=True)
class RunReport:
    """What one round did; `queued` lists the messages it put in the send queue,
    `webhooks` counts the webhooks it put in the outbox (`cloud.webhooks.outbound`)."""

    triggers: int = 0
    started: int = 0
    held_out: int = 0
    resumed: int = 0
    exited: int = 0
    woken: int = 0
    failed: int = 0
    queued: list[int] = field(default_factory=list)
    webhooks: int = 0

    def add(self, other: RunReport) -> None:
        for name in ("triggers", "started", "held_out", "resumed", "exited", "woken", "failed",
                     "webhooks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.queued.extend(other.queued)


class _Facts:
    """Customer facts for one batch, reloaded for a customer after a step changed them."""

    def __init__(
        self, session: Session, now: datetime, kinds: frozenset[FactKind], lookups: Lookups
    ) -> None:
        """`kinds`: the parts the batch's scenarios read (`TenantCatalog.facts`); the
        customer rows come from (and stay in) the batch's `lookups`."""
        self._session, self._now, self._kinds, self._lookups = session, now, kinds, lookups
        self._facts: dict[int, CustomerFacts] = {}

    def preload(self, customer_ids: Iterable[int]) -> None:
        missing = {cid for cid in customer_ids if cid not in self._facts}
        if missing:
            customers = list(self._lookups.customers(missing).values())
            self._facts.update(load_facts(self._session, customer_ids=missing, now=self._now,
                                          kinds=self._kinds, customers=customers))

    def get(self, customer_id: int) -> CustomerFacts | None:
        self.preload([customer_id])
        return self._facts.get(customer_id)

    def forget(self, customer_id: int) -> None:
        self._facts.pop(customer_id, None)


@dataclass(slots=True)
class _Run:
    """What one attempt at a batch shares. Its journal of step outcomes is written in
    one statement when the attempt succeeds (`write_journal`), not a row at a time, and
    is simply dropped with the attempt when it fails."""

    session: Session
    config: EngineConfig
    now: datetime
    report: RunReport
    facts: _Facts
    lookups: Lookups
    journal: list[tuple[Journey, str, str, str | None]] = field(default_factory=list)
    messages: MessageBatch = field(default_factory=MessageBatch)
    #: Messages queued but not written yet: their journey and their line in the journal.
    queued: list[tuple[PendingMessage, Journey, int]] = field(default_factory=list)
    #: Journeys this run inserted, with the row as inserted. They stay out of the ORM
    #: session: what the batch changes in them afterwards (most finish at once, right
    #: after their first send) is written in one statement, not an UPDATE each.
    inserted: list[tuple[Journey, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def begin(
        cls, session: Session, config: EngineConfig, now: datetime, facts: frozenset[FactKind]
    ) -> _Run:
        lookups = Lookups(session, now=now)
        return cls(session=session, config=config, now=now, report=RunReport(),
                   facts=_Facts(session, now, facts, lookups), lookups=lookups)

    def facts_of(self, customer_id: int) -> CustomerFacts | None:
        """The customer's facts, with the messages queued for them written first (a
        condition may ask about them)."""
        if self.messages.holds_for(customer_id):
            self.write_messages()
        return self.facts.get(customer_id)

    def queue(self, message: PendingMessage, journey: Journey) -> None:
        """A message a step of `journey` queued, logged as its journal's last line."""
        self.queued.append((message, journey, len(self.journal) - 1))

    def write_messages(self) -> None:
        """Insert the queued messages; each stored one joins its journey's context and
        the report, a refused one (its key taken before) turns its line into a
        duplicate."""
        self.messages.write(self.session)
        for message, journey, line in self.queued:
            if message.id is None:
                logged, step, _outcome, _detail = self.journal[line]
                self.journal[line] = (logged, step, "duplicate", message.idempotency_key)
                continue
            self.report.queued.append(message.id)
            journey.context = {**journey.context,
                               "messages": [*journey.context.get("messages", []), message.id]}
        self.queued.clear()

    def prepare_sends(self, journeys: Iterable[tuple[Journey, LoadedScenario]]) -> None:
        """Load what send steps read for these journeys' customers, in one go."""
        chosen = list(journeys)
        caps = [cap for _journey, loaded in chosen for cap in loaded.spec.caps]
        self.lookups.preload((journey.customer_id for journey, _loaded in chosen),
                             sends_within=cap_window(self.config.settings, caps))
        self.lookups.preload_stores(
            (journey.tenant, key) for journey, _loaded in chosen
            if (key := store_key(journey)) is not None
        )

    def log(self, journey: Journey, step: str, outcome: str, detail: str | None) -> None:
        journey.updated_at = self.now
        self.journal.append((journey, step, outcome, (detail or None) and detail[:500]))

    def write_journeys(self) -> None:
        """Write the inserted journeys the batch changed since."""
        changed = [
            {"id": journey.id, **row} for journey, written in self.inserted
            if (row := _journey_row(journey)) != written
        ]
        self.inserted.clear()
        update_rows(self.session.connection(), JOURNEY_TABLE, changed, key="id")

    def write_journal(self) -> None:
        """Write the journal; lines of journeys never inserted (refused starts) are left out."""
        rows = [
            {"journey_id": journey.id, "customer_id": journey.customer_id, "step": step,
             "at": self.now, "outcome": outcome, "detail": detail}
            for journey, step, outcome, detail in self.journal if journey.id is not None
        ]
        self.journal.clear()
        insert_rows(self.session.connection(), JOURNEY_LOG_TABLE, rows)


# --- triggers ------------------------------------------------------------------------------


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
    if _attempt(session, config, now, report, partial(_run_batch, catalog=catalog, rows=rows),
                facts=catalog.facts):
        SCENARIO_TRIGGERS.labels(outcome="handled").inc(len(rows))
        return
    log.warning("a batch of %d triggers failed; handling them one by one", len(rows))
    for row in rows:
        if _attempt(session, config, now, report,
                    partial(_run_batch, catalog=catalog, rows=[row]), facts=catalog.facts):
            SCENARIO_TRIGGERS.labels(outcome="handled").inc()
        else:  # one bad trigger must not block every later one
            log.error("trigger %s (%s) failed; marked processed", row.id, row.kind)
            report.failed += 1
            SCENARIO_TRIGGERS.labels(outcome="failed").inc()


def _run_batch(run: _Run, *, catalog: TenantCatalog, rows: Sequence[Trigger]) -> None:
    _Batch(run, catalog).run(rows)


def _attempt(
    session: Session, config: EngineConfig, now: datetime, report: RunReport,
    work: Callable[[_Run], None], *, facts: frozenset[FactKind],
) -> bool:
    """Run `work` (reading the `facts` kinds of customer facts) in a savepoint; on success
    add what it did to `report`. On failure everything it wrote is rolled back and its
    report dropped."""
    run = _Run.begin(session, config, now, facts)
    try:
        with session.begin_nested():
            work(run)
            run.write_messages()
            run.write_journeys()
            run.write_journal()
    except Exception:
        log.exception("scenario work failed; rolled back")
        return False
    report.add(run.report)
    return True


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

    def __init__(self, run: _Run, catalog: TenantCatalog) -> None:
        self._run, self._catalog = run, catalog
        self._open: dict[int, list[Journey]] = defaultdict(list)
        self._last_entry: dict[tuple[str, int], datetime] = {}
        self._pending: dict[str, _Start] = {}
        self._pending_for: dict[int, list[_Start]] = defaultdict(list)

    def run(self, rows: Sequence[Trigger]) -> None:
        # Entry filters read only the trigger: scenarios it cannot enter cost no lookups.
        entering = [
            tuple(scenario for scenario in self._catalog.by_entry.get(TriggerKind(row.kind), ())
                  if _entry_matches(scenario.spec.entry, row))
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
        if loaded is None or trigger.occurred_at < _entered_at(journey):
            return
        spec = loaded.spec
        if trigger.kind in spec.exit_on:
            _finish(journey, JourneyStatus.EXITED, f"exit:{trigger.kind}", run.now)
            run.log(journey, journey.step or "-", "exited", f"on {trigger.kind}")
            run.report.exited += 1
            return
        if journey.waiting_for != trigger.kind or journey.step is None:
            return
        step = _step(spec, journey.step)
        since = _wait_started(journey)
        if not isinstance(step, WaitForEventStep) or (since and trigger.occurred_at < since):
            return
        if not matches_attributes(step.where, trigger.attributes or {}):
            return
        journey.waiting_for, journey.wake_at = None, None
        journey.status = JourneyStatus.RUNNING
        journey.step = step.yes or _following(spec, step.id)
        run.log(journey, step.id, "event", f"{trigger.kind} arrived")
        run.report.resumed += 1
        _advance(run, journey, loaded, as_of=trigger.occurred_at)

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
            conditions, customer_facts, trigger.attributes or {}, self._run.now
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
                       held_out=in_holdout(scenario.spec, tenant, customer_id))
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
        journeys = [_new_journey(start, run.now) for start in starts]
        for start, journey in zip(starts, journeys, strict=True):
            if start.held_out:
                run.log(journey, "-", "held_out", f"holdout {start.scenario.spec.holdout_percent}%")
            else:
                _advance(run, journey, start.scenario, as_of=start.trigger.occurred_at,
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
                _advance(run, journey, start.scenario, as_of=start.trigger.occurred_at)


def _new_journey(start: _Start, now: datetime) -> Journey:
    spec, trigger, held_out = start.scenario.spec, start.trigger, start.held_out
    tenant, customer_id = trigger.tenant, trigger.customer_id
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
        },
    )


#: What `_insert_journeys` writes: every column but the id.
_JOURNEY_COLUMNS = tuple(column.name for column in JOURNEY_TABLE.c if column.name != "id")


def _insert_journeys(run: _Run, journeys: Sequence[Journey]) -> set[str]:
    """Insert new journeys (one statement) unless their entry key was used before; the
    inserted ones get their ids, and the run writes what the batch changes in them
    afterwards (`_Run.write_journeys`). Returns their entry keys."""
    written = {journey.entry_key: (journey, _journey_row(journey)) for journey in journeys}
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


def _journey_row(journey: Journey) -> dict[str, Any]:
    return {name: getattr(journey, name) for name in _JOURNEY_COLUMNS}


def _entry_matches(entry: Entry, trigger: Trigger) -> bool:
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


def _entered_at(journey: Journey) -> datetime:
    """When the trigger that started the journey happened: events before it are not its
    business (journeys from before this was recorded fall back to their start)."""
    value = journey.context.get("entered_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else journey.started_at


def _wait_started(journey: Journey) -> datetime | None:
    value = journey.context.get("wait_since")
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def bucket(*parts: object) -> int:
    """A stable number in [0, 10000) for holdout and A/B assignment: the same customer
    lands in the same group of a scenario on every worker and every run."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def assign_variant(spec: ScenarioSpec, tenant: str, customer_id: int) -> str | None:
    if not spec.variants:
        return None
    total = sum(variant.weight for variant in spec.variants)
    point = bucket(tenant, spec.key, customer_id, "variant") * total // 10_000
    for variant in spec.variants:
        if point < variant.weight:
            return variant.key
        point -= variant.weight
    return spec.variants[-1].key


def in_holdout(spec: ScenarioSpec, tenant: str, customer_id: int) -> bool:
    return bucket(tenant, spec.key, customer_id, "holdout") < spec.holdout_percent * 100


# --- timers --------------------------------------------------------------------------------


def wake_due_journeys(
    session: Session, *, catalog: Catalog, config: EngineConfig, now: datetime, limit: int
) -> RunReport:
    """Continue up to `limit` journeys whose wait is over, in the caller's transaction:
    all in one savepoint, or, should one fail, each in its own (a journey that fails
    alone is ended)."""
    report = RunReport()
    due = session.exec(
        select(Journey).where(
            col(Journey.status) == JourneyStatus.WAITING.value, col(Journey.wake_at) <= now
        ).order_by(col(Journey.wake_at), col(Journey.id)).limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return report
    catalogs = {tenant: catalog.tenant(session, tenant)
                for tenant in sorted({journey.tenant for journey in due})}
    ids = [journey.id for journey in due]
    facts = frozenset().union(*(tenant.facts for tenant in catalogs.values()))
    if _attempt(session, config, now, report, partial(_wake_all, due=due, catalogs=catalogs),
                facts=facts):
        return report
    log.warning("waking %d journeys failed; waking them one by one", len(ids))
    for journey_id in ids:
        journey = session.get(Journey, journey_id)
        if journey is None or journey.status != JourneyStatus.WAITING:
            continue
        if not _attempt(session, config, now, report,
                        partial(_wake_all, due=[journey], catalogs=catalogs), facts=facts):
            log.error("journey %s failed to continue; ended", journey_id)
            report.woken += 1
            report.failed += 1
            _finish(journey, JourneyStatus.EXITED, "error", now)
    return report


def _wake_all(
    run: _Run, *, due: Sequence[Journey], catalogs: Mapping[str, TenantCatalog]
) -> None:
    run.facts.preload(journey.customer_id for journey in due)
    run.prepare_sends(
        (journey, loaded) for journey in due
        if (loaded := catalogs[journey.tenant].scenarios.get(journey.scenario_key)) is not None
    )
    for journey in due:
        run.report.woken += 1
        _wake(run, journey, catalogs[journey.tenant])


def _wake(run: _Run, journey: Journey, catalog: TenantCatalog) -> None:
    loaded = catalog.scenarios.get(journey.scenario_key)
    if loaded is None:
        _finish(journey, JourneyStatus.EXITED, "scenario_removed", run.now)
        return
    if journey.waiting_for is not None and journey.step is not None:
        step = _step(loaded.spec, journey.step)
        if isinstance(step, WaitForEventStep):
            run.log(journey, step.id, "timeout", f"no {step.event.value}")
            journey.step = step.no or _following(loaded.spec, step.id)
    journey.waiting_for, journey.wake_at = None, None
    journey.status = JourneyStatus.RUNNING
    _advance(run, journey, loaded, as_of=run.now)


# --- steps ---------------------------------------------------------------------------------


def _step(spec: ScenarioSpec, step_id: str) -> Any:
    try:
        return spec.steps[spec.step_index(step_id)]
    except KeyError:
        return None


def _following(spec: ScenarioSpec, step_id: str) -> str:
    index = spec.step_index(step_id)
    return spec.steps[index + 1].id if index + 1 < len(spec.steps) else END


def _advance(
    run: _Run, journey: Journey, loaded: LoadedScenario, *, as_of: datetime,
    database: bool = True,
) -> None:
    """Run steps from `journey.step` until a wait or the end. `as_of` is when what moved
    the journey happened (its trigger; `now` for a timer): an awaited event counts from
    then, so one that happened after the trigger but is handled in the same batch is not
    missed. With `database` false, stop (still running) at the first step that acts: the
    journey is not stored yet."""
    spec, now = loaded.spec, run.now
    journey.scenario_version = loaded.version
    for _ in range(MAX_STEPS_PER_RUN):
        step_id = journey.step or END
        if step_id == END:
            _finish(journey, JourneyStatus.DONE, "completed", now)
            return
        step = _step(spec, step_id)
        if step is None:
            _finish(journey, JourneyStatus.EXITED, "step_removed", now)
            return
        if not database and not isinstance(step, WaitStep | WaitForEventStep | BranchStep):
            return
        SCENARIO_STEPS.labels(type=step.type).inc()
        if isinstance(step, WaitStep):
            _wait(journey, until=now + step.wait_for, step=step.next or _following(spec, step.id),
                  now=now)
            run.log(journey, step.id, "waiting", f"until {journey.wake_at}")
            return
        if isinstance(step, WaitForEventStep):
            _wait(journey, until=now + step.timeout, step=step.id, now=now)
            journey.waiting_for = step.event.value
            journey.context = {**journey.context, "wait_since": as_of.isoformat()}
            run.log(journey, step.id, "waiting", f"for {step.event.value} until {journey.wake_at}")
            return
        # Read only by the steps below (after an act they are reloaded: it may have
        # changed them), so a journey that sends and then waits reloads nothing.
        customer_facts = run.facts_of(journey.customer_id)
        if customer_facts is None:
            return  # erased meanwhile
        if isinstance(step, BranchStep):
            trigger = journey.context.get("trigger", {})
            taken = evaluate(step.condition, customer_facts, trigger, now)
            run.log(journey, step.id, "branch", "then" if taken else "else")
            target = step.then if taken else step.otherwise
            journey.step = target or _following(spec, step.id)
            continue
        result = _act(run, journey=journey, step=step, spec=spec, facts=customer_facts)
        run.log(journey, step.id, result.outcome, result.detail)
        if result.message is not None:
            run.queue(result.message, journey)
        run.facts.forget(journey.customer_id)
        if result.outcome == WEBHOOK_QUEUED:
            run.report.webhooks += 1
        journey.step = step.next or _following(spec, step.id)
    _finish(journey, JourneyStatus.EXITED, "too_many_steps", now)


def _act(
    run: _Run, *, journey: Journey, step: Any, spec: ScenarioSpec, facts: CustomerFacts
) -> StepResult:
    session, config, now = run.session, run.config, run.now
    if isinstance(step, SendStep):
        return send_step(session, journey=journey, step=step, spec_caps=spec.caps, facts=facts,
                         lookups=run.lookups, messages=run.messages, settings=config.settings,
                         links=config.links, now=now)
    if isinstance(step, IssueCouponStep):
        return issue_coupon_step(session, journey=journey, step_id=step.id, choice=step.offer,
                                 coupon=step.coupon, facts=facts, now=now)
    if isinstance(step, TagStep):
        return tag_step(session, journey=journey, step=step, now=now)
    if isinstance(step, RemoveFromListStep):
        return remove_from_list_step(session, journey=journey, step=step, now=now)
    if isinstance(step, LoyaltyCreditStep):
        return loyalty_step(session, journey=journey, step=step, now=now)
    if isinstance(step, WebhookStep):
        return webhook_step(session, journey=journey, step=step, now=now)
    raise TypeError(f"unknown step type {type(step).__name__}")


def _wait(journey: Journey, *, until: datetime, step: str, now: datetime) -> None:
    journey.status, journey.wake_at, journey.step = JourneyStatus.WAITING, until, step
    journey.updated_at = now


def _finish(journey: Journey, status: JourneyStatus, reason: str, now: datetime) -> None:
    journey.status, journey.reason = status, reason[:64]
    journey.finished_at = journey.updated_at = now
    journey.wake_at = journey.waiting_for = None
