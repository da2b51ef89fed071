"""Moving a journey through its scenario's steps: waits, branches, and the steps that
act (send, coupon, tag, list, credit, webhook), until a wait or the end.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cloud.metrics import SCENARIO_STEPS
from cloud.scenarios.actions import (
    WEBHOOK_QUEUED,
    loyalty_step,
    remove_from_list_step,
    tag_step,
    webhook_step,
)
from cloud.scenarios.catalog import LoadedScenario
from cloud.scenarios.conditions import (
    CustomerFacts,
    SegmentBook,
    evaluate,
    segments_reached,
)
from cloud.scenarios.models import Journey, JourneyStatus
from cloud.scenarios.run import Run
from cloud.scenarios.sending import StepResult, issue_coupon_step, send_step
from cloud.scenarios.spec import (
    END,
    BranchStep,
    IssueCouponStep,
    LoyaltyCreditStep,
    RemoveFromListStep,
    ScenarioSpec,
    SendStep,
    TagStep,
    WaitForEventStep,
    WaitStep,
    WebhookStep,
)

#: Steps one journey may run without waiting: a branch looping on itself is a mistake
#: that must not hold a worker.
MAX_STEPS_PER_RUN = 100


def advance(
    run: Run, journey: Journey, loaded: LoadedScenario, *, as_of: datetime,
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
            finish(journey, JourneyStatus.DONE, "completed", now)
            return
        step = step_of(spec, step_id)
        if step is None:
            finish(journey, JourneyStatus.EXITED, "step_removed", now)
            return
        if not database and not isinstance(step, WaitStep | WaitForEventStep | BranchStep):
            return
        SCENARIO_STEPS.labels(type=step.type).inc()
        if isinstance(step, WaitStep):
            wait(journey, until=now + step.wait_for, step=step.next or following(spec, step.id),
                  now=now)
            run.log(journey, step.id, "waiting", f"until {journey.wake_at}")
            return
        if isinstance(step, WaitForEventStep):
            wait(journey, until=now + step.timeout, step=step.id, now=now)
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
            taken = evaluate(step.condition, customer_facts, trigger, now, loaded.segments)
            decided = segments_reached(step.condition, loaded.segments)
            if decided:
                journey.context = {**journey.context, "segments": {
                    **journey.context.get("segments", {}), **decided}}
            run.log(journey, step.id, "branch", "then" if taken else "else")
            target = step.then if taken else step.otherwise
            journey.step = target or following(spec, step.id)
            continue
        result = act(run, journey=journey, step=step, spec=spec, facts=customer_facts,
                     segments=loaded.segments)
        run.log(journey, step.id, result.outcome, result.detail)
        if result.message is not None:
            run.queue(result.message, journey)
        run.facts.forget(journey.customer_id)
        if result.outcome == WEBHOOK_QUEUED:
            run.report.webhooks += 1
        journey.step = step.next or following(spec, step.id)
    finish(journey, JourneyStatus.EXITED, "too_many_steps", now)


def act(
    run: Run, *, journey: Journey, step: Any, spec: ScenarioSpec, facts: CustomerFacts,
    segments: SegmentBook,
) -> StepResult:
    """Run a step that acts; `segments` decide offers restricted to a segment."""
    session, config, now = run.session, run.config, run.now
    if isinstance(step, SendStep):
        return send_step(session, journey=journey, step=step, spec_caps=spec.caps, facts=facts,
                         lookups=run.lookups, messages=run.messages, settings=config.settings,
                         links=config.links, now=now, segments=segments)
    if isinstance(step, IssueCouponStep):
        return issue_coupon_step(session, run.lookups, journey=journey, step_id=step.id,
                                 choice=step.offer, coupon=step.coupon, facts=facts, now=now,
                                 segments=segments)
    if isinstance(step, TagStep):
        return tag_step(session, journey=journey, step=step, now=now)
    if isinstance(step, RemoveFromListStep):
        return remove_from_list_step(session, journey=journey, step=step, now=now)
    if isinstance(step, LoyaltyCreditStep):
        return loyalty_step(session, journey=journey, step=step, now=now)
    if isinstance(step, WebhookStep):
        return webhook_step(session, journey=journey, step=step, now=now)
    raise TypeError(f"unknown step type {type(step).__name__}")


def step_of(spec: ScenarioSpec, step_id: str) -> Any:
    try:
        return spec.steps[spec.step_index(step_id)]
    except KeyError:
        return None


def following(spec: ScenarioSpec, step_id: str) -> str:
    index = spec.step_index(step_id)
    return spec.steps[index + 1].id if index + 1 < len(spec.steps) else END


def wait(journey: Journey, *, until: datetime, step: str, now: datetime) -> None:
    journey.status, journey.wake_at, journey.step = JourneyStatus.WAITING, until, step
    journey.updated_at = now


def finish(journey: Journey, status: JourneyStatus, reason: str, now: datetime) -> None:
    journey.status, journey.reason = status, reason[:64]
    journey.finished_at = journey.updated_at = now
    journey.wake_at = journey.waiting_for = None


def entered_at(journey: Journey) -> datetime:
    """When the trigger that started the journey happened: events before it are not its
    business (journeys from before this was recorded fall back to their start)."""
    value = journey.context.get("entered_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else journey.started_at


def wait_started(journey: Journey) -> datetime | None:
    value = journey.context.get("wait_since")
    return datetime.fromisoformat(value) if isinstance(value, str) else None
