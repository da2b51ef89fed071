"""Journeys whose wait is over: continued by whichever worker claims them first."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial

from sqlmodel import Session, col, select

from cloud.scenarios.catalog import Catalog, TenantCatalog
from cloud.scenarios.models import Journey, JourneyStatus
from cloud.scenarios.run import EngineConfig, Run, RunReport, attempt
from cloud.scenarios.spec import WaitForEventStep
from cloud.scenarios.steps import advance, finish, following, step_of

log = logging.getLogger(__name__)

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
    if attempt(session, config, now, report, partial(_wake_all, due=due, catalogs=catalogs),
                facts=facts):
        return report
    log.warning("waking %d journeys failed; waking them one by one", len(ids))
    for journey_id in ids:
        journey = session.get(Journey, journey_id)
        if journey is None or journey.status != JourneyStatus.WAITING:
            continue
        if not attempt(session, config, now, report,
                        partial(_wake_all, due=[journey], catalogs=catalogs), facts=facts):
            log.error("journey %s failed to continue; ended", journey_id)
            report.woken += 1
            report.failed += 1
            finish(journey, JourneyStatus.EXITED, "error", now)
    return report


def _wake_all(
    run: Run, *, due: Sequence[Journey], catalogs: Mapping[str, TenantCatalog]
) -> None:
    run.facts.preload(journey.customer_id for journey in due)
    run.prepare_sends(
        (journey, loaded) for journey in due
        if (loaded := catalogs[journey.tenant].scenarios.get(journey.scenario_key)) is not None
    )
    for journey in due:
        run.report.woken += 1
        run.decide_at(journey.wake_at or run.started)
        _wake(run, journey, catalogs[journey.tenant])


def _wake(run: Run, journey: Journey, catalog: TenantCatalog) -> None:
    loaded = catalog.scenarios.get(journey.scenario_key)
    if loaded is None:
        finish(journey, JourneyStatus.EXITED, "scenario_removed", run.now)
        return
    if journey.waiting_for is not None and journey.step is not None:
        step = step_of(loaded.spec, journey.step)
        if isinstance(step, WaitForEventStep):
            run.log(journey, step.id, "timeout", f"no {step.event.value}")
            journey.step = step.no or following(loaded.spec, step.id)
    journey.waiting_for, journey.wake_at = None, None
    journey.status = JourneyStatus.RUNNING
    advance(run, journey, loaded, as_of=run.now)
