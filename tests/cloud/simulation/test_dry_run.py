"""A dry run decides what the live worker decided over the same recorded events: the same
journeys, with the same steps and outcomes, the same messages, coupons and credit; and it
writes nothing to the live database. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, SQLModel, col, select

from cloud.commerce.loyalty import LoyaltyEntry
from cloud.customers.models import Customer
from cloud.db import session_scope
from cloud.messages.models import Message
from cloud.offers.models import Coupon
from cloud.scenarios.catalog import save_scenario
from cloud.scenarios.models import Journey, JourneyLog, JourneyStatus
from cloud.scenarios.worker import ScenarioWorker
from cloud.simulation.dry_run import simulate
from cloud.simulation.replay import Period, VirtualClock
from tests.cloud.simulation.history import CONFIG, END, SPEC, START, Event, seed

TENANT = "shop"


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_scope(engine) as session:
        yield session


def live_run(engine: Engine, events: list[Event]) -> None:
    """The live worker, woken at every event and at every timer, as in production."""
    clock = VirtualClock(events[0].at)
    worker = ScenarioWorker(engine=engine, config=CONFIG, now=clock)

    def wake_until(moment: datetime) -> None:
        while True:
            with session_scope(engine) as session:
                due = session.exec(select(func.min(Journey.wake_at)).where(
                    Journey.status == JourneyStatus.WAITING.value)).one()
            if due is None or due > moment:
                return
            clock.advance(due)
            worker.run_once(calendar=False)

    for event in events:
        wake_until(event.at)
        clock.advance(event.at)
        with session_scope(engine) as session:
            event.apply(session, event.at)
            session.commit()
        worker.run_once(calendar=False)
    wake_until(END)


def decided(session: Session) -> list[tuple[Any, ...]]:
    """The live journeys of the period, as the dry run's sample shows its own."""
    journeys = session.exec(select(Journey).where(Journey.scenario_key == SPEC.key)
                            .order_by(col(Journey.id))).all()
    found = []
    for journey in journeys:
        customer = session.get(Customer, journey.customer_id)
        assert customer is not None
        steps = session.exec(select(JourneyLog).where(JourneyLog.journey_id == journey.id)
                             .order_by(col(JourneyLog.id))).all()
        found.append((customer.public_id, journey.context["entered_at"], journey.variant,
                      journey.holdout, journey.status, journey.reason,
                      tuple((step.step, step.outcome) for step in steps)))
    return sorted(found)


def counts(session: Session) -> dict[str, int]:
    return {table.name: session.exec(select(func.count()).select_from(table)).one()
            for table in SQLModel.metadata.sorted_tables}


def test_a_dry_run_decides_what_the_live_worker_decided(session: Session, engine: Engine) -> None:
    events = seed(session, TENANT)
    save_scenario(session, tenant=TENANT, spec=SPEC, now=START - timedelta(days=1))
    session.commit()
    live_run(engine, events)
    session.expire_all()
    live = decided(session)
    assert len(live) > 20
    outcomes = {outcome for *_rest, steps in live for _step, outcome in steps}
    # The story covers what matters: sends, holds, no consent, cooldown-free re-entry,
    # orders in time and timeouts, holdout.
    assert {"queued", "held", "no_consent", "event", "timeout", "credited",
            "held_out"} <= outcomes
    before = counts(session)

    report = simulate(session, tenant=TENANT, spec=SPEC, period=Period(START, END),
                      config=CONFIG, sample_size=10_000)
    session.rollback()

    assert counts(session) == before  # the live database is only read
    simulated = sorted(
        (journey.customer_id, journey.entered_at.isoformat() if journey.entered_at else None,
         journey.variant, journey.holdout, journey.status, journey.reason,
         tuple((step.step, step.outcome) for step in journey.steps))
        for journey in report.sample
    )
    assert simulated == live
    messages = session.exec(select(Message).where(Message.scenario == SPEC.key)).all()
    assert sum(row.sends for row in report.sends) == len(messages)
    assert report.holds == sum(
        1 for row in messages if row.not_before is not None and row.not_before > row.created_at)
    coupons = session.exec(select(func.count()).select_from(Coupon)).one()
    assert report.coupons_issued == coupons
    credit = sum(row.amount for row in session.exec(select(LoyaltyEntry)).all())
    assert report.loyalty_credit == {"EUR": credit}
    assert report.entries + report.held_out == len(live)
