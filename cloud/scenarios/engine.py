"""Running scenarios: triggers start, resume and end journeys; journeys run their steps
until a wait, whose timer any worker may pick up later.

Both entry points claim their work with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite
serialises writers), so any number of workers share it and each trigger and each timer
is handled by exactly one. A trigger's effects and its "processed" mark commit together;
a worker that dies mid-batch leaves the batch to the next one, and journeys, coupons,
credits and messages are all keyed by journey and step, so running a step twice
changes nothing the second time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, update
from sqlmodel import Session, SQLModel, col, select

from cloud.customers.models import Customer
from cloud.metrics import SCENARIO_STEPS, SCENARIO_TRIGGERS
from cloud.presence.store import dialect_insert
from cloud.scenarios.actions import (
    loyalty_step,
    remove_from_list_step,
    tag_step,
    webhook_step,
)
from cloud.scenarios.catalog import Catalog, LoadedScenario, TenantCatalog
from cloud.scenarios.conditions import CustomerFacts, evaluate, matches_attributes
from cloud.scenarios.facts import load_facts
from cloud.scenarios.models import (
    OPEN_STATUSES,
    Journey,
    JourneyLog,
    JourneyStatus,
)
from cloud.scenarios.sending import Links, StepResult, issue_coupon_step, send_step
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
from cloud.scenarios.triggers import Trigger, TriggerKind
from cloud.settings import ScenarioSettings

log = logging.getLogger(__name__)

JOURNEY_TABLE: Table = SQLModel.metadata.tables[Journey.__tablename__]
TRIGGER_TABLE: Table = SQLModel.metadata.tables[Trigger.__tablename__]
#: Steps one journey may run without waiting: a branch looping on itself is a mistake
#: that must not hold a worker.
MAX_STEPS_PER_RUN = 100
#: A failing outbound webhook is retried this often, waiting twice as long each time.
WEBHOOK_ATTEMPTS = 5
WEBHOOK_FIRST_RETRY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    settings: ScenarioSettings
    links: Links
    #: The tenant's webhook signing secrets (outbound webhooks are signed with the first).
    webhook_secrets: Callable[[str], list[str]] = lambda _tenant: []


@dataclass(slots=True)
class RunReport:
    """What one round did; `queued` lists the messages it put in the send queue."""

    triggers: int = 0
    started: int = 0
    held_out: int = 0
    resumed: int = 0
    exited: int = 0
    woken: int = 0
    failed: int = 0
    queued: list[int] = field(default_factory=list)

    def add(self, other: RunReport) -> None:
        for name in ("triggers", "started", "held_out", "resumed", "exited", "woken", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.queued.extend(other.queued)


class _Facts:
    """Customer facts for one batch, reloaded for a customer after a step changed them."""

    def __init__(self, session: Session, now: datetime) -> None:
        self._session, self._now = session, now
        self._facts: dict[int, CustomerFacts] = {}

    def preload(self, customer_ids: Iterable[int]) -> None:
        missing = {cid for cid in customer_ids if cid not in self._facts}
        if missing:
            self._facts.update(load_facts(self._session, customer_ids=missing, now=self._now))

    def get(self, customer_id: int) -> CustomerFacts | None:
        self.preload([customer_id])
        return self._facts.get(customer_id)

    def forget(self, customer_id: int) -> None:
        self._facts.pop(customer_id, None)


# --- triggers ------------------------------------------------------------------------------


def process_triggers(
    session: Session, *, catalog: Catalog, config: EngineConfig, now: datetime, limit: int
) -> RunReport:
    """Handle up to `limit` unprocessed triggers, oldest first, in the caller's transaction
    (the caller commits)."""
    report = RunReport()
    rows = session.exec(
        select(Trigger).where(col(Trigger.processed_at).is_(None))
        .order_by(col(Trigger.id)).limit(limit).with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return report
    report.triggers = len(rows)
    facts = _Facts(session, now)
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
        if not relevant:
            continue
        customer_ids = sorted({row.customer_id for row in relevant})
        _lock_customers(session, customer_ids)
        facts.preload(customer_ids)
        for row in relevant:
            try:
                with session.begin_nested():
                    _handle_trigger(
                        session, trigger=row, catalog=tenant_catalog, facts=facts,
                        config=config, now=now, report=report,
                    )
                SCENARIO_TRIGGERS.labels(outcome="handled").inc()
            except Exception:  # one bad trigger must not block every later one
                log.exception("trigger %s (%s) failed; marked processed", row.id, row.kind)
                facts.forget(row.customer_id)
                report.failed += 1
                SCENARIO_TRIGGERS.labels(outcome="failed").inc()
    session.connection().execute(
        update(TRIGGER_TABLE)
        .where(TRIGGER_TABLE.c.id.in_([row.id for row in rows]))
        .values(processed_at=now)
    )
    return report


def _lock_customers(session: Session, customer_ids: Sequence[int]) -> None:
    """Serialise decisions per customer across workers (in id order: no deadlocks), so
    "only if no journey is running" cannot be true for two workers at once."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(
            select(Customer.id).where(col(Customer.id).in_(customer_ids))
            .order_by(col(Customer.id)).with_for_update()
        ).all()


def _handle_trigger(
    session: Session, *, trigger: Trigger, catalog: TenantCatalog, facts: _Facts,
    config: EngineConfig, now: datetime, report: RunReport,
) -> None:
    kind = TriggerKind(trigger.kind)
    if kind in catalog.resuming_kinds:
        _resume_or_exit(session, trigger=trigger, catalog=catalog, facts=facts, config=config,
                        now=now, report=report)
    for scenario in catalog.by_entry.get(kind, ()):
        if _entry_matches(scenario.spec.entry, trigger):
            _start(session, scenario=scenario, trigger=trigger, facts=facts, config=config,
                   now=now, report=report)


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


def _resume_or_exit(
    session: Session, *, trigger: Trigger, catalog: TenantCatalog, facts: _Facts,
    config: EngineConfig, now: datetime, report: RunReport,
) -> None:
    journeys = session.exec(
        select(Journey).where(
            Journey.customer_id == trigger.customer_id, col(Journey.status).in_(OPEN_STATUSES)
        ).order_by(col(Journey.id)).with_for_update()
    ).all()
    for journey in journeys:
        loaded = catalog.scenarios.get(journey.scenario_key)
        if loaded is None or trigger.occurred_at < journey.started_at:
            continue
        spec = loaded.spec
        if trigger.kind in spec.exit_on:
            _finish(session, journey, JourneyStatus.EXITED, f"exit:{trigger.kind}", now)
            _log(session, journey, journey.step or "-", "exited", f"on {trigger.kind}", now)
            report.exited += 1
            continue
        if journey.waiting_for != trigger.kind or journey.step is None:
            continue
        step = _step(spec, journey.step)
        since = _wait_started(journey)
        if not isinstance(step, WaitForEventStep) or (since and trigger.occurred_at < since):
            continue
        if not matches_attributes(step.where, trigger.attributes or {}):
            continue
        journey.waiting_for, journey.wake_at = None, None
        journey.status = JourneyStatus.RUNNING
        journey.step = step.yes or _following(spec, step.id)
        _log(session, journey, step.id, "event", f"{trigger.kind} arrived", now)
        report.resumed += 1
        _advance(session, journey=journey, loaded=loaded, facts=facts, config=config,
                 now=now, report=report)


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


def _start(
    session: Session, *, scenario: LoadedScenario, trigger: Trigger, facts: _Facts,
    config: EngineConfig, now: datetime, report: RunReport,
) -> None:
    spec, tenant, customer_id = scenario.spec, trigger.tenant, trigger.customer_id
    entry = spec.entry
    if entry.reentry is not Reentry.ONCE:
        if entry.reentry is Reentry.AFTER_EXIT and _journey_exists(
            session, tenant=tenant, key=spec.key, customer_id=customer_id,
            condition=col(Journey.status).in_(OPEN_STATUSES),
        ):
            return
        if entry.cooldown is not None and _journey_exists(
            session, tenant=tenant, key=spec.key, customer_id=customer_id,
            condition=col(Journey.started_at) > now - entry.cooldown,
        ):
            return
    customer_facts = facts.get(customer_id)
    if customer_facts is None:
        return
    if spec.conditions is not None and not evaluate(
        spec.conditions, customer_facts, trigger.attributes or {}, now
    ):
        return
    entry_key = (
        f"{tenant}:{spec.key}:{customer_id}" if entry.reentry is Reentry.ONCE
        else f"{tenant}:{spec.key}:{customer_id}:t{trigger.id}"
    )
    held_out = in_holdout(spec, tenant, customer_id)
    journey_id = session.connection().execute(
        dialect_insert(session, JOURNEY_TABLE)
        .values(
            tenant=tenant, scenario_key=spec.key, scenario_version=scenario.version,
            customer_id=customer_id, entry_key=entry_key, entry_kind=trigger.kind,
            variant=assign_variant(spec, tenant, customer_id), holdout=held_out,
            status=(JourneyStatus.HELD_OUT if held_out else JourneyStatus.RUNNING).value,
            step=spec.steps[0].id, started_at=now, updated_at=now,
            finished_at=now if held_out else None,
            context={"trigger": {**(trigger.attributes or {}), "kind": trigger.kind,
                                 "id": trigger.id}},
        )
        .on_conflict_do_nothing(index_elements=["entry_key"])
        .returning(JOURNEY_TABLE.c.id)
    ).first()
    if journey_id is None:
        return  # started before: a replayed trigger, or a once-only scenario
    journey = session.get(Journey, int(journey_id[0]))
    assert journey is not None
    if held_out:
        _log(session, journey, "-", "held_out", f"holdout {spec.holdout_percent}%", now)
        report.held_out += 1
        return
    report.started += 1
    _advance(session, journey=journey, loaded=scenario, facts=facts, config=config, now=now,
             report=report)


def _journey_exists(
    session: Session, *, tenant: str, key: str, customer_id: int,
    condition: ColumnElement[bool],
) -> bool:
    """Whether this customer has a journey through scenario `key` meeting `condition`."""
    return session.exec(
        select(Journey.id).where(
            Journey.tenant == tenant, Journey.scenario_key == key,
            Journey.customer_id == customer_id, condition,
        ).limit(1)
    ).first() is not None


# --- timers --------------------------------------------------------------------------------


def wake_due_journeys(
    session: Session, *, catalog: Catalog, config: EngineConfig, now: datetime, limit: int
) -> RunReport:
    """Continue up to `limit` journeys whose wait is over, in the caller's transaction."""
    report = RunReport()
    due = session.exec(
        select(Journey).where(
            col(Journey.status) == JourneyStatus.WAITING.value, col(Journey.wake_at) <= now
        ).order_by(col(Journey.wake_at), col(Journey.id)).limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    facts = _Facts(session, now)
    facts.preload(journey.customer_id for journey in due)
    for journey in due:
        report.woken += 1
        try:
            with session.begin_nested():
                _wake(session, journey=journey, catalog=catalog.tenant(session, journey.tenant),
                      facts=facts, config=config, now=now, report=report)
        except Exception:
            log.exception("journey %s failed to continue; ended", journey.id)
            report.failed += 1
            with session.begin_nested():
                _finish(session, journey, JourneyStatus.EXITED, "error", now)
    return report


def _wake(
    session: Session, *, journey: Journey, catalog: TenantCatalog, facts: _Facts,
    config: EngineConfig, now: datetime, report: RunReport,
) -> None:
    loaded = catalog.scenarios.get(journey.scenario_key)
    if loaded is None:
        _finish(session, journey, JourneyStatus.EXITED, "scenario_removed", now)
        return
    if journey.waiting_for is not None and journey.step is not None:
        step = _step(loaded.spec, journey.step)
        if isinstance(step, WaitForEventStep):
            _log(session, journey, step.id, "timeout", f"no {step.event.value}", now)
            journey.step = step.no or _following(loaded.spec, step.id)
    journey.waiting_for, journey.wake_at = None, None
    journey.status = JourneyStatus.RUNNING
    _advance(session, journey=journey, loaded=loaded, facts=facts, config=config, now=now,
             report=report)


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
    session: Session, *, journey: Journey, loaded: LoadedScenario, facts: _Facts,
    config: EngineConfig, now: datetime, report: RunReport,
) -> None:
    """Run steps from `journey.step` until a wait or the end."""
    spec = loaded.spec
    journey.scenario_version = loaded.version
    for _ in range(MAX_STEPS_PER_RUN):
        step_id = journey.step or END
        if step_id == END:
            _finish(session, journey, JourneyStatus.DONE, "completed", now)
            return
        step = _step(spec, step_id)
        if step is None:
            _finish(session, journey, JourneyStatus.EXITED, "step_removed", now)
            return
        customer_facts = facts.get(journey.customer_id)
        if customer_facts is None:
            return  # erased meanwhile
        SCENARIO_STEPS.labels(type=step.type).inc()
        if isinstance(step, WaitStep):
            _wait(journey, until=now + step.wait_for, step=step.next or _following(spec, step.id),
                  now=now)
            _log(session, journey, step.id, "waiting", f"until {journey.wake_at}", now)
            return
        if isinstance(step, WaitForEventStep):
            _wait(journey, until=now + step.timeout, step=step.id, now=now)
            journey.waiting_for = step.event.value
            journey.context = {**journey.context, "wait_since": now.isoformat()}
            _log(session, journey, step.id, "waiting",
                 f"for {step.event.value} until {journey.wake_at}", now)
            return
        if isinstance(step, BranchStep):
            trigger = journey.context.get("trigger", {})
            taken = evaluate(step.condition, customer_facts, trigger, now)
            _log(session, journey, step.id, "branch", "then" if taken else "else", now)
            target = step.then if taken else step.otherwise
            journey.step = target or _following(spec, step.id)
            continue
        result = _act(session, journey=journey, step=step, spec=spec, facts=customer_facts,
                      config=config, now=now)
        _log(session, journey, step.id, result.outcome, result.detail, now)
        if result.message_id is not None:
            report.queued.append(result.message_id)
        facts.forget(journey.customer_id)
        if result.outcome == "webhook_failed" and _retry_webhook(journey, step.id, now):
            return
        journey.step = step.next or _following(spec, step.id)
    _finish(session, journey, JourneyStatus.EXITED, "too_many_steps", now)


def _act(
    session: Session, *, journey: Journey, step: Any, spec: ScenarioSpec,
    facts: CustomerFacts, config: EngineConfig, now: datetime,
) -> StepResult:
    if isinstance(step, SendStep):
        return send_step(session, journey=journey, step=step, spec_caps=spec.caps, facts=facts,
                         settings=config.settings, links=config.links, now=now)
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
        return webhook_step(journey=journey, step=step,
                            secrets=config.webhook_secrets(journey.tenant),
                            timeout_s=config.settings.webhook_timeout_s, now=now)
    raise TypeError(f"unknown step type {type(step).__name__}")


def _retry_webhook(journey: Journey, step_id: str, now: datetime) -> bool:
    """Schedule another try of a failed webhook step; False once the attempts are spent."""
    attempts = dict(journey.context.get("webhook_attempts", {}))
    done = int(attempts.get(step_id, 0)) + 1
    attempts[step_id] = done
    journey.context = {**journey.context, "webhook_attempts": attempts}
    if done >= WEBHOOK_ATTEMPTS:
        return False
    _wait(journey, until=now + WEBHOOK_FIRST_RETRY * 2 ** (done - 1), step=step_id, now=now)
    return True


def _wait(journey: Journey, *, until: datetime, step: str, now: datetime) -> None:
    journey.status, journey.wake_at, journey.step = JourneyStatus.WAITING, until, step
    journey.updated_at = now


def _finish(
    session: Session, journey: Journey, status: JourneyStatus, reason: str, now: datetime
) -> None:
    journey.status, journey.reason = status, reason[:64]
    journey.finished_at = journey.updated_at = now
    journey.wake_at = journey.waiting_for = None
    session.add(journey)


def _log(
    session: Session, journey: Journey, step: str, outcome: str, detail: str | None,
    now: datetime,
) -> None:
    assert journey.id is not None
    journey.updated_at = now
    session.add(journey)
    session.add(JourneyLog(
        journey_id=journey.id, customer_id=journey.customer_id, step=step, at=now,
        outcome=outcome, detail=(detail or None) and detail[:500],
    ))
