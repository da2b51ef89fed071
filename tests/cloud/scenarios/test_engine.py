"""The engine on a controlled clock, on SQLite and PostgreSQL: journeys started by
triggers, steps run up to waits, timers woken, awaited events, exits, reentry rules,
holdout and variants, sends through the gate, and two workers sharing the timers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.commerce.loyalty import LoyaltyEntry
from cloud.customers.crud import create_customer, record_consent
from cloud.customers.models import ConsentCreate, Customer, CustomerCreate
from cloud.db import session_scope
from cloud.messages.models import Message
from cloud.scenarios.assignment import assign_variant, in_holdout
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.models import CustomerTag, Journey, JourneyLog
from cloud.scenarios.run import EngineConfig, RunReport
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.scenarios.timers import wake_due_journeys
from cloud.settings import ScenarioSettings
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec
from cloud.triggers import Trigger, TriggerKind, record_trigger

TENANT = "shop"
#: Midday UTC: outside the default quiet hours unless a test means otherwise.
NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
CONFIG = EngineConfig(settings=ScenarioSettings(),
                      links=Links(base_url="https://t.example", secret="s" * 32))


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_scope(engine) as session:
        yield session


def customer(session: Session, **fields: Any) -> int:
    row = create_customer(session, tenant=TENANT, data=CustomerCreate(**fields), now=NOW)
    session.commit()
    assert row.id is not None
    return row.id


def scenario(session: Session, document: dict[str, Any]) -> None:
    base: dict[str, Any] = {"name": "test", "entry": {"event": "cart.abandoned"}}
    save_scenario(session, tenant=TENANT, spec=ScenarioSpec.model_validate({**base, **document}),
                  now=NOW)
    session.commit()


def trigger(session: Session, customer_id: int, kind: TriggerKind, source: str,
            at: datetime = NOW, **attributes: Any) -> int | None:
    found = record_trigger(session, tenant=TENANT, customer_id=customer_id, kind=kind,
                           occurred_at=at, source_key=source, now=at, attributes=attributes)
    session.commit()
    return found


def run(session: Session, catalog: Catalog, now: datetime) -> RunReport:
    report = process_triggers(session, catalog=catalog, config=CONFIG, now=now, limit=100)
    report.add(wake_due_journeys(session, catalog=catalog, config=CONFIG, now=now, limit=100))
    session.commit()
    session.expire_all()
    return report


def journeys(session: Session, key: str | None = None) -> list[Journey]:
    query = select(Journey).order_by(col(Journey.id))
    if key is not None:
        query = query.where(Journey.scenario_key == key)
    return list(session.exec(query).all())


def outcomes(session: Session, journey_id: int | None) -> list[tuple[str, str]]:
    rows = session.exec(select(JourneyLog).where(JourneyLog.journey_id == journey_id)
                        .order_by(col(JourneyLog.id))).all()
    return [(row.step, row.outcome) for row in rows]


FLOW = {
    "key": "flow", "exit_on": ["coupon.redeemed"],
    "steps": [
        {"id": "tag", "type": "tag", "add": ["abandoner"]},
        {"id": "pause", "type": "wait", "for": "PT1H"},
        {"id": "await", "type": "wait_for", "event": "order.created", "timeout": "P1D",
         "where": [{"attribute": "total", "op": "gte", "value": 10}],
         "yes": "credit", "no": "vip"},
        {"id": "vip", "type": "branch", "if": {"tag": "vip"}, "then": "credit", "else": "end"},
        {"id": "credit", "type": "loyalty_credit", "amount": "5.00", "currency": "EUR"},
    ],
}


def credits(session: Session, customer_id: int) -> list[Decimal]:
    rows = session.exec(select(LoyaltyEntry).where(LoyaltyEntry.customer_id == customer_id))
    return [row.amount for row in rows]


def test_a_journey_runs_tag_wait_wait_for_and_times_out_into_the_branch(
    session: Session,
) -> None:
    scenario(session, FLOW)
    catalog, ana = Catalog(), customer(session)
    trigger(session, ana, TriggerKind.CART_ABANDONED, "cart:1")
    assert run(session, catalog, NOW).started == 1
    (journey,) = journeys(session)
    assert (journey.status, journey.step) == ("waiting", "await")
    assert journey.wake_at == NOW + timedelta(hours=1)
    assert session.get(CustomerTag, (ana, "abandoner")) is not None

    assert run(session, catalog, NOW + timedelta(minutes=59)).woken == 0
    assert run(session, catalog, NOW + timedelta(hours=1)).woken == 1
    session.refresh(journey)
    assert (journey.status, journey.waiting_for) == ("waiting", "order.created")
    # An order too small for the wait's filter does not count.
    trigger(session, ana, TriggerKind.ORDER_CREATED, "order:small", NOW + timedelta(hours=2),
            total=5)
    assert run(session, catalog, NOW + timedelta(hours=2)).resumed == 0
    assert run(session, catalog, NOW + timedelta(hours=25)).woken == 1
    session.refresh(journey)
    assert (journey.status, journey.reason) == ("done", "completed")
    assert outcomes(session, journey.id) == [
        ("tag", "tagged") if outcomes(session, journey.id)[0][1] == "tagged"
        else outcomes(session, journey.id)[0],
        ("pause", "waiting"), ("await", "waiting"), ("await", "timeout"), ("vip", "branch"),
    ]
    assert credits(session, ana) == []


def test_the_awaited_event_takes_the_yes_branch_and_credits_once(session: Session) -> None:
    scenario(session, FLOW)
    catalog, ana = Catalog(), customer(session)
    trigger(session, ana, TriggerKind.CART_ABANDONED, "cart:1")
    run(session, catalog, NOW)
    run(session, catalog, NOW + timedelta(hours=1))
    trigger(session, ana, TriggerKind.ORDER_CREATED, "order:1", NOW + timedelta(hours=3),
            total=50)
    assert run(session, catalog, NOW + timedelta(hours=3)).resumed == 1
    (journey,) = journeys(session)
    assert (journey.status, journey.wake_at) == ("done", None)
    assert credits(session, ana) == [Decimal("5.00")]
    assert run(session, catalog, NOW + timedelta(days=3)).woken == 0  # the timeout is gone


def test_a_vip_who_does_not_order_is_credited_by_the_branch(session: Session) -> None:
    scenario(session, FLOW)
    catalog, ana = Catalog(), customer(session)
    session.add(CustomerTag(customer_id=ana, tag="vip", added_at=NOW))
    session.commit()
    trigger(session, ana, TriggerKind.CART_ABANDONED, "cart:1")
    for hours in (0, 1, 25):
        run(session, catalog, NOW + timedelta(hours=hours))
    assert credits(session, ana) == [Decimal("5.00")]
    assert ("vip", "branch") in outcomes(session, journeys(session)[0].id)


def test_an_exit_event_ends_the_waiting_journey(session: Session) -> None:
    scenario(session, FLOW)
    catalog, ana = Catalog(), customer(session)
    trigger(session, ana, TriggerKind.CART_ABANDONED, "cart:1")
    run(session, catalog, NOW)
    trigger(session, ana, TriggerKind.COUPON_REDEEMED, "coupon:1", NOW + timedelta(minutes=5))
    assert run(session, catalog, NOW + timedelta(minutes=5)).exited == 1
    (journey,) = journeys(session)
    assert (journey.status, journey.reason, journey.wake_at) == ("exited",
                                                                 "exit:coupon.redeemed", None)
    assert run(session, catalog, NOW + timedelta(days=2)).woken == 0


def test_a_replayed_trigger_starts_nothing_twice(session: Session) -> None:
    scenario(session, FLOW)
    catalog, ana = Catalog(), customer(session)
    first = trigger(session, ana, TriggerKind.CART_ABANDONED, "cart:1")
    assert first is not None
    assert trigger(session, ana, TriggerKind.CART_ABANDONED, "cart:1") is None
    run(session, catalog, NOW)
    # Even a trigger handled again (a worker that died before its mark) starts nothing new.
    row = session.get(Trigger, first)
    assert row is not None
    row.processed_at = None
    session.commit()
    report = run(session, catalog, NOW + timedelta(seconds=1))
    assert (report.triggers, report.started) == (1, 0)
    assert len(journeys(session)) == 1
    assert session.exec(select(CustomerTag).where(CustomerTag.customer_id == ana)).all()


def short(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "entry": {"event": "cart.abandoned", **entry},
            "steps": [{"id": "pause", "type": "wait", "for": "PT1H"}]}


def test_reentry_once_after_exit_and_cooldown(session: Session) -> None:
    scenario(session, short("once", {"reentry": "once"}))
    scenario(session, short("after", {"reentry": "after_exit"}))
    scenario(session, short("cool", {"reentry": "always", "cooldown": "PT2H"}))
    catalog, ana = Catalog(), customer(session)

    def cart(minutes: int) -> None:
        at = NOW + timedelta(minutes=minutes)
        run(session, catalog, at)  # due timers first, as time passes
        trigger(session, ana, TriggerKind.CART_ABANDONED, f"cart:{minutes}", at)
        run(session, catalog, at)

    cart(0)
    cart(30)  # all three journeys still open or in cooldown
    assert [len(journeys(session, key)) for key in ("once", "after", "cool")] == [1, 1, 1]
    cart(90)  # the first wait ended at 60: after_exit may start again; cooldown not over
    assert [len(journeys(session, key)) for key in ("once", "after", "cool")] == [1, 2, 1]
    cart(130)  # cooldown over (started at 0, 2 h); "after" is still waiting (since 90)
    assert [len(journeys(session, key)) for key in ("once", "after", "cool")] == [1, 2, 2]
    cart(140)  # "always": a new journey even with one open, once the cooldown allows
    assert [len(journeys(session, key)) for key in ("once", "after", "cool")] == [1, 2, 2]
    cart(60 * 24)
    assert [len(journeys(session, key)) for key in ("once", "after", "cool")] == [1, 3, 3]


def test_entry_filters_and_conditions_decide_who_starts(session: Session) -> None:
    scenario(session, {
        "key": "store", "entry": {"event": "presence.enter",
                                  "where": [{"attribute": "store", "value": "s1"}]},
        "conditions": {"not": {"tag": "staff"}},
        "steps": [{"id": "pause", "type": "wait", "for": "PT1H"}],
    })
    catalog, ana, staff = Catalog(), customer(session), customer(session)
    session.add(CustomerTag(customer_id=staff, tag="staff", added_at=NOW))
    session.commit()
    trigger(session, ana, TriggerKind.PRESENCE_ENTER, "p:1", store="s2")
    trigger(session, staff, TriggerKind.PRESENCE_ENTER, "p:2", store="s1")
    assert run(session, catalog, NOW).started == 0
    trigger(session, ana, TriggerKind.PRESENCE_ENTER, "p:3", store="s1")
    assert run(session, catalog, NOW).started == 1


def test_holdout_and_variants_are_stable_and_recorded(session: Session) -> None:
    document = {**short("ab", {"reentry": "always"}), "holdout_percent": 30,
                "variants": [{"key": "a"}, {"key": "b", "weight": 2}]}
    scenario(session, document)
    spec = ScenarioSpec.model_validate({"name": "test", **document})
    catalog = Catalog()
    ids = [customer(session) for _ in range(24)]
    for round_ in range(2):
        for cid in ids:
            trigger(session, cid, TriggerKind.CART_ABANDONED, f"cart:{cid}:{round_}")
        run(session, catalog, NOW + timedelta(hours=2 * round_))
    rows = journeys(session)
    assert len(rows) == 48
    for row in rows:
        assert row.holdout is in_holdout(spec, TENANT, row.customer_id)
        assert row.status in ({"held_out"} if row.holdout else {"waiting", "done"})
        assert row.variant == assign_variant(spec, TENANT, row.customer_id)
    by_customer: dict[int, set[tuple[bool, str | None]]] = {}
    for row in rows:
        by_customer.setdefault(row.customer_id, set()).add((row.holdout, row.variant))
    assert all(len(groups) == 1 for groups in by_customer.values())
    assert {row.holdout for row in rows} == {True, False}
    assert {row.variant for row in rows} == {"a", "b"}
    held = next(row for row in rows if row.holdout)
    assert outcomes(session, held.id) == [("-", "held_out")]


def test_a_send_is_held_for_quiet_hours_and_needs_consent(session: Session) -> None:
    save_template(session, tenant=TENANT, key="cart", now=NOW, spec=TemplateSpec.model_validate({
        "channel": "email", "locale": "en-GB",
        "parts": {"subject": "Your cart", "html": "<p>Hi {{ customer.first_name }}</p>"
                  "{{ unsubscribe_url }}",
                  "text": "Hi {{ customer.first_name }} {{ unsubscribe_url }}"},
    }))
    scenario(session, {"key": "mail", "steps": [
        {"id": "send", "type": "send", "channels": ["email"], "template": "cart"}]})
    catalog = Catalog()
    ana = customer(session, email="ana@example.com", first_name="Ana",
                   time_zone="Europe/Madrid", locale="en-GB")
    bob = customer(session, email="bob@example.com", time_zone="Europe/Madrid")
    row = session.exec(select(Journey)).first()
    assert row is None
    ana_row = session.get(Customer, ana)
    assert ana_row is not None
    record_consent(session, customer=ana_row, data=ConsentCreate(
        channel="email", granted=True, source="web"), now=NOW)
    session.commit()
    late = datetime(2026, 5, 10, 22, 0, tzinfo=UTC)  # midnight in Madrid
    trigger(session, ana, TriggerKind.CART_ABANDONED, "cart:a", late)
    trigger(session, bob, TriggerKind.CART_ABANDONED, "cart:b", late)
    report = run(session, catalog, late)
    assert len(report.queued) == 1
    message = session.get(Message, report.queued[0])
    assert message is not None
    assert message.customer_id == ana
    assert message.not_before == datetime(2026, 5, 11, 7, 0, tzinfo=UTC)  # 09:00 in Madrid
    ana_journey, bob_journey = journeys(session)
    assert outcomes(session, ana_journey.id) == [("send", "held")]
    assert outcomes(session, bob_journey.id) == [("send", "no_consent")]
    assert session.exec(select(Message).where(Message.customer_id == bob)).all() == []


def test_a_send_step_run_again_queues_nothing_and_says_so(session: Session) -> None:
    save_template(session, tenant=TENANT, key="cart", now=NOW, spec=TemplateSpec.model_validate({
        "channel": "email", "locale": "en-GB",
        "parts": {"subject": "Your cart", "html": "<p>Hi</p>{{ unsubscribe_url }}",
                  "text": "Hi {{ unsubscribe_url }}"},
    }))
    scenario(session, {"key": "mail", "steps": [
        {"id": "send", "type": "send", "channels": ["email"], "template": "cart"},
        {"id": "pause", "type": "wait", "for": "PT1H"}]})
    catalog, ana = Catalog(), customer(session, email="ana@example.com")
    ana_row = session.get(Customer, ana)
    assert ana_row is not None
    record_consent(session, customer=ana_row, data=ConsentCreate(
        channel="email", granted=True, source="web"), now=NOW)
    session.commit()
    trigger(session, ana, TriggerKind.CART_ABANDONED, "cart:a")
    assert len(run(session, catalog, NOW).queued) == 1
    # As if a worker had died after the send but before moving on: the step runs again.
    (journey,) = journeys(session)
    journey.step, journey.wake_at = "send", NOW
    session.add(journey)
    session.commit()

    assert run(session, catalog, NOW + timedelta(minutes=1)).queued == []
    assert outcomes(session, journey.id) == [
        ("send", "queued"), ("pause", "waiting"), ("send", "duplicate"), ("pause", "waiting"),
    ]
    assert len(session.exec(select(Message)).all()) == 1
    session.refresh(journey)
    assert len(journey.context["messages"]) == 1


def test_two_postgresql_workers_claim_distinct_due_journeys(
    engine: Engine, session: Session
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers")
    scenario(session, {"key": "timer", "entry": {"event": "cart.abandoned"}, "steps": [
        {"id": "pause", "type": "wait", "for": "PT1H"},
        {"id": "credit", "type": "loyalty_credit", "amount": "1.00", "currency": "EUR"}]})
    catalog = Catalog()
    ids = [customer(session) for _ in range(10)]
    for cid in ids:
        trigger(session, cid, TriggerKind.CART_ABANDONED, f"cart:{cid}")
    run(session, catalog, NOW)
    later = NOW + timedelta(hours=2)
    with session_scope(engine) as first, session_scope(engine) as second:
        one = wake_due_journeys(first, catalog=catalog, config=CONFIG, now=later, limit=6)
        # The first worker's transaction is open: its rows are locked, the second skips them.
        two = wake_due_journeys(second, catalog=catalog, config=CONFIG, now=later, limit=6)
        first.commit()
        second.commit()
    assert (one.woken, two.woken) == (6, 4)
    session.expire_all()
    assert all(row.status == "done" for row in journeys(session))
    logs = session.exec(select(JourneyLog.journey_id).where(JourneyLog.step == "credit")).all()
    assert sorted(logs) == sorted(row.id or 0 for row in journeys(session))
    assert sorted(cid for cid in ids for _ in credits(session, cid)) == sorted(ids)
