"""The webhook step on SQLite and PostgreSQL: it only queues the webhook in the outbox
(the delivery worker posts it), once per journey and step however often it runs, and a
journey left waiting at its webhook step (as the old inline retries parked it) queues it
when woken and goes on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.customers.crud import create_customer
from cloud.customers.models import CustomerCreate
from cloud.db import session_scope
from cloud.scenarios.actions import WEBHOOK_QUEUED, webhook_step
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.models import Journey, JourneyStatus
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec, WebhookStep
from cloud.scenarios.timers import wake_due_journeys
from cloud.settings import ScenarioSettings
from cloud.webhooks.outbound import OutboundWebhook, WebhookStatus

TENANT = "shop"
NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
HOOK = "https://shop.example/hooks/scenario"
SPEC = ScenarioSpec.model_validate({
    "key": "notify", "name": "notify", "entry": {"event": "cart.abandoned"},
    "steps": [
        {"id": "hook", "type": "webhook", "url": HOOK},
        {"id": "tag", "type": "tag", "add": ["notified"]},
    ],
})


def waiting_journey(session: Session, *, at_step: str) -> Journey:
    customer = create_customer(session, tenant=TENANT, now=NOW,
                               data=CustomerCreate(external_id="ana"))
    assert customer.id is not None
    journey = Journey(
        tenant=TENANT, scenario_key=SPEC.key, scenario_version=1, customer_id=customer.id,
        entry_key=f"{TENANT}:{SPEC.key}:{customer.id}", entry_kind="cart.abandoned",
        status=JourneyStatus.WAITING, step=at_step, wake_at=NOW, started_at=NOW,
        updated_at=NOW,
    )
    session.add(journey)
    session.commit()
    return journey


def outbox(session: Session) -> list[OutboundWebhook]:
    return list(session.exec(select(OutboundWebhook)).all())


def test_a_webhook_step_run_twice_queues_one_webhook(engine: Engine) -> None:
    step = WebhookStep.model_validate({"id": "hook", "type": "webhook", "url": HOOK})
    with session_scope(engine) as session:
        journey = waiting_journey(session, at_step="hook")
        first = webhook_step(session, journey=journey, step=step, now=NOW)
        again = webhook_step(session, journey=journey, step=step, now=NOW + timedelta(hours=1))
        session.commit()
        [row] = outbox(session)
    assert (first.outcome, first.detail) == (WEBHOOK_QUEUED, f"outbox {row.id}")
    assert (again.outcome, again.detail) == (WEBHOOK_QUEUED, "already queued")
    assert (row.status, row.attempts, row.url) == (WebhookStatus.QUEUED, 0, HOOK)
    assert (row.journey_id, row.step, row.idempotency_key) == (
        journey.id, "hook", f"j{journey.id}:hook"
    )
    assert json.loads(row.body)["at"] == NOW.isoformat()  # the first run's body stays


def test_a_journey_waiting_at_its_webhook_step_queues_it_when_woken_and_goes_on(
    engine: Engine,
) -> None:
    config = EngineConfig(settings=ScenarioSettings(),
                          links=Links(base_url="https://t.example", secret="s" * 32))
    with session_scope(engine) as session:
        save_scenario(session, tenant=TENANT, spec=SPEC, now=NOW)
        journey = waiting_journey(session, at_step="hook")
        report = wake_due_journeys(session, catalog=Catalog(), config=config, now=NOW,
                                   limit=10)
        session.commit()
        session.refresh(journey)
        assert (report.woken, report.webhooks) == (1, 1)
        assert (journey.status, journey.reason) == (JourneyStatus.DONE, "completed")
        [row] = outbox(session)
        assert json.loads(row.body)["journey_id"] == journey.id
