"""Recording triggers once per cause, and claiming them: oldest first, marked processed by
the claiming statement, the mark undone with the transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from cloud.customers.crud import create_customer
from cloud.customers.models import CustomerCreate
from cloud.db import session_scope
from cloud.triggers import Trigger, TriggerKind, claim_triggers, record_trigger, trigger_row

TENANT = "triggers"
NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)


def recorded(engine: Engine, count: int) -> list[int]:
    with session_scope(engine) as session:
        customer = create_customer(session, tenant=TENANT, data=CustomerCreate(), now=NOW)
        assert customer.id is not None
        ids = [record_trigger(session, tenant=TENANT, customer_id=customer.id,
                              kind=TriggerKind.PRESENCE_ENTER, occurred_at=NOW,
                              source_key=f"visit:{n}", now=NOW) for n in range(count)]
        assert record_trigger(session, tenant=TENANT, customer_id=customer.id,
                              kind=TriggerKind.PRESENCE_ENTER, occurred_at=NOW,
                              source_key="visit:0", now=NOW) is None  # a replayed cause
        session.commit()
    return [trigger_id for trigger_id in ids if trigger_id is not None]


def unprocessed(engine: Engine) -> list[int]:
    with session_scope(engine) as session:
        return [row.id or 0 for row in session.exec(
            select(Trigger).where(Trigger.processed_at == None)  # noqa: E711
            .order_by(Trigger.id)  # type: ignore[arg-type]
        )]


def test_claims_take_the_oldest_and_mark_them_with_the_transaction(engine: Engine) -> None:
    ids = recorded(engine, 5)
    later = NOW + timedelta(minutes=1)

    with session_scope(engine) as session:
        claimed = claim_triggers(session, now=later, limit=3)
        assert [row.id for row in claimed] == ids[:3]
        assert {row.processed_at for row in claimed} == {later}
        session.rollback()
    assert unprocessed(engine) == ids  # rolled back: the mark with it

    with session_scope(engine) as session:
        assert [row.id for row in claim_triggers(session, now=later, limit=3)] == ids[:3]
        session.commit()
    assert unprocessed(engine) == ids[3:]

    with session_scope(engine) as session:
        assert [row.id for row in claim_triggers(session, now=later, limit=10)] == ids[3:]
        assert claim_triggers(session, now=later, limit=10) == []
        session.commit()
    assert unprocessed(engine) == []


def test_an_attribute_no_scenario_could_know_of_is_refused_when_recorded() -> None:
    """What triggers carry is documented (`TRIGGER_ATTRIBUTES`) and kept so: a new
    attribute must be declared, and so appears in the scenario reference."""
    with pytest.raises(ValueError, match=r"presence.enter triggers carry no attributes \['mac'\]"):
        trigger_row(tenant=TENANT, customer_id=1, kind=TriggerKind.PRESENCE_ENTER,
                    occurred_at=NOW, source_key="x", now=NOW,
                    attributes={"store": "s1", "mac": "aa:bb"})
