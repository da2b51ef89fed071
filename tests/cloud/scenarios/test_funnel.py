"""The funnel on SQLite and PostgreSQL: transactional messages (consent requests) get
rows of their own, flagged, so marketing figures can leave them out."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, update
from sqlmodel import col

from cloud.db import session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.scenarios.funnel import funnel
from cloud.scenarios.models import Journey, JourneyLog, JourneyStatus
from cloud.scenarios.sending import HELD_PAST_DEADLINE
from tests.cloud.delivery.queue_helpers import NOW, new_customer, outgoing, queue


def test_consent_requests_are_counted_apart_from_marketing(engine: Engine, tenant: str) -> None:
    customer = new_customer(engine, tenant)
    email = "email"
    ids = queue(
        engine,
        outgoing(tenant, customer, "doi:1", channel=email, scenario="newsletter",
                 step="confirm", transactional=True),
        outgoing(tenant, customer, "doi:2", channel=email, scenario="newsletter",
                 step="confirm", transactional=True),
        # The same step once it was (wrongly) marketing: a row of its own.
        outgoing(tenant, customer, "old", channel=email, scenario="newsletter", step="confirm"),
        outgoing(tenant, customer, "welcome", channel=email, scenario="newsletter",
                 step="welcome"),
    )
    with session_scope(engine) as session:
        session.execute(update(Message).where(col(Message.id).in_(ids))
                        .values(status=MessageStatus.SENT.value, sent_at=NOW))
        session.commit()
        rows = funnel(session, tenant=tenant, since=NOW, until=NOW + timedelta(days=1))

    found = {(row.step, row.transactional): (row.queued, row.sent) for row in rows}
    assert found == {
        ("confirm", True): (2, 2), ("confirm", False): (1, 1), ("welcome", False): (1, 1),
    }
    marketing_sent = sum(row.sent for row in rows if not row.transactional)
    assert marketing_sent == 2


def test_a_send_held_past_its_deadline_counts_as_expired(engine: Engine, tenant: str) -> None:
    """No message was made for it: the journey log's decision is what is counted."""
    customer = new_customer(engine, tenant)
    queue(engine, outgoing(tenant, customer, "greet", scenario="visit", step="greet"))
    with session_scope(engine) as session:
        journey = Journey(tenant=tenant, scenario_key="visit", scenario_version=1,
                          customer_id=customer, entry_key="v", entry_kind="presence.enter",
                          status=JourneyStatus.EXITED, started_at=NOW, updated_at=NOW)
        session.add(journey)
        session.flush()
        assert journey.id is not None
        session.add(JourneyLog(journey_id=journey.id, customer_id=customer, step="greet",
                               at=NOW, outcome=HELD_PAST_DEADLINE, detail="quiet hours"))
        session.commit()
        rows = funnel(session, tenant=tenant, since=NOW, until=NOW + timedelta(days=1))
    assert [(row.step, row.queued, row.expired) for row in rows] == [("greet", 1, 1)]
