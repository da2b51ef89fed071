"""Orders and money, on SQLite and PostgreSQL: spend is what customers paid (per
currency), an order counts once however many event ids it comes under, and a
cancellation or a refund takes back what the order did (spend, loyalty credit,
purchases, conversions; coupons when their offer says so), once.

Events go through `handle_webhook` as the API calls it, and the engine runs the
scenarios the triggers start; the API's own answers (422s, receipts) are checked through
signed requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select

from cloud.api import create_app
from cloud.api.scenarios import report_rows
from cloud.api.webhooks import WEBHOOK_ADAPTER
from cloud.commerce.crud import RefundRefusedError, lifetime_spend
from cloud.commerce.loyalty import LoyaltyEntry, loyalty_balance
from cloud.commerce.models import (
    CommerceEvent,
    Ignored,
    Order,
    OrderLine,
    OrderRefund,
    OrderStatus,
    WebhookReceipt,
)
from cloud.customers.crud import create_customer
from cloud.customers.models import CustomerCreate
from cloud.db import session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.messages.queue import enqueue
from cloud.offers.crud import issue_coupon
from cloud.offers.models import Coupon
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.conditions import Condition, CustomerFacts, evaluate
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.facts import load_facts
from cloud.scenarios.funnel import funnel
from cloud.scenarios.models import Journey, JourneyLog
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.scenarios.timers import wake_due_journeys
from cloud.settings import ScenarioSettings
from cloud.triggers import Trigger, TriggerKind
from cloud.webhooks.inbound import handle_webhook
from cloud.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.cloud.delivery.queue_helpers import outgoing
from tests.cloud.factories import cloud_settings
from tests.cloud.offers.factories import save_offer

#: Midday UTC: outside the default quiet hours.
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=2)
SECRET = "whsec-money-0123456789"
CONFIG = EngineConfig(settings=ScenarioSettings(),
                      links=Links(base_url="https://t.example", secret="s" * 32))
WASHER = {"sku": "WM-8KG", "name": "Washing machine 8 kg", "category": "washers",
          "quantity": 1, "unit_price": "599.00"}
DRYER = {"sku": "TD-8KG-HP", "name": "Heat-pump dryer 8 kg", "category": "dryers",
         "quantity": 1, "unit_price": "699.00"}
HOSES = {"sku": "HOSE-2M", "name": "Inlet hose", "category": "accessories",
         "quantity": 2, "unit_price": "25.00"}
CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)
#: 27 of credit once lifetime spend crosses 1,000 (the acceptance journey's loyalty).
SPEND_1000: dict[str, Any] = {
    "key": "spend-1000", "name": "Credit at 1000",
    "entry": {"event": "spend.changed", "spend_crosses": "1000", "reentry": "always"},
    "steps": [{"id": "credit", "type": "loyalty_credit", "amount": "27.00", "currency": "EUR"}],
}
#: 10 of credit for every order.
ORDER_CREDIT: dict[str, Any] = {
    "key": "order-credit", "name": "Credit per order",
    "entry": {"event": "order.created", "reentry": "always"},
    "steps": [{"id": "credit", "type": "loyalty_credit", "amount": "10.00", "currency": "EUR"}],
}


# --- builders ----------------------------------------------------------------------------------


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_scope(engine) as session:
        yield session


def new_customer(session: Session, tenant: str, name: str = "juan") -> int:
    row = create_customer(session, tenant=tenant, now=NOW,
                          data=CustomerCreate(external_id=name, first_name="Juan"))
    session.commit()
    assert row.id is not None
    return row.id


def order(order_id: str = "o-1", *, total: str = "858.65", currency: str = "EUR",
          items: list[dict[str, Any]] | None = None, coupons: list[str] | None = None,
          event_id: str | None = None, at: datetime = NOW, who: str = "juan") -> dict[str, Any]:
    return {"type": "order.created", "event_id": event_id or f"evt-{order_id}",
            "occurred_at": at.isoformat(), "customer": {"external_id": who},
            "order_id": order_id, "currency": currency, "total": total,
            "items": items or [WASHER, DRYER], "coupons": coupons or []}


def cancel(order_id: str = "o-1", *, event_id: str | None = None, at: datetime = LATER,
           reason: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "order.cancelled", "event_id": event_id or f"cancel-{order_id}",
                            "occurred_at": at.isoformat(), "order_id": order_id}
    if reason is not None:
        body["reason"] = reason
    return body


def refund(order_id: str, refund_id: str, amount: str, *, items: list[dict[str, Any]] | None = None,
           currency: str = "EUR", event_id: str | None = None, at: datetime = LATER
           ) -> dict[str, Any]:
    return {"type": "order.refunded", "event_id": event_id or f"evt-{refund_id}",
            "occurred_at": at.isoformat(), "order_id": order_id, "refund_id": refund_id,
            "amount": amount, "currency": currency, "items": items or []}


def send(session: Session, tenant: str, body: dict[str, Any], now: datetime | None = None
         ) -> WebhookReceipt:
    """One event as the API applies it (one transaction)."""
    event = WEBHOOK_ADAPTER.validate_python(body)
    receipt = handle_webhook(session, tenant=tenant, event=event, now=now or event.occurred_at)
    session.commit()
    return receipt


def scenarios(session: Session, tenant: str, *documents: dict[str, Any]) -> None:
    for document in documents:
        save_scenario(session, tenant=tenant, spec=ScenarioSpec.model_validate(document),
                      now=NOW - timedelta(days=30))
    session.commit()


def run(session: Session, now: datetime) -> None:
    catalog = Catalog()
    process_triggers(session, catalog=catalog, config=CONFIG, now=now, limit=500)
    wake_due_journeys(session, catalog=catalog, config=CONFIG, now=now, limit=500)
    session.commit()
    session.expire_all()


def triggers(session: Session, customer_id: int, kind: TriggerKind) -> list[dict[str, Any]]:
    rows = session.exec(select(Trigger).where(
        Trigger.customer_id == customer_id, Trigger.kind == kind.value,
    ).order_by(col(Trigger.id))).all()
    return [dict(row.attributes) for row in rows]


def spend_changes(session: Session, customer_id: int) -> list[tuple[str, str, str, str]]:
    return [(one["order_id"], one["currency"], one["before"], one["after"])
            for one in triggers(session, customer_id, TriggerKind.SPEND_CHANGED)]


def ledger(session: Session, customer_id: int) -> list[tuple[Decimal, str | None, bool]]:
    """(amount, order, is a reversal) of each loyalty entry, in order."""
    rows = session.exec(select(LoyaltyEntry).where(LoyaltyEntry.customer_id == customer_id)
                        .order_by(col(LoyaltyEntry.id))).all()
    return [(Decimal(str(row.amount)).quantize(Decimal("0.01")), row.order_id,
             row.reverses_id is not None) for row in rows]


def facts_of(session: Session, customer_id: int, now: datetime = LATER) -> CustomerFacts:
    return load_facts(session, customer_ids=[customer_id], now=now)[customer_id]


def sent_message(session: Session, tenant: str, customer_id: int, key: str) -> int:
    """A marketing push the customer got an hour before the orders: their last touch."""
    message_id = enqueue(session, now=NOW - timedelta(hours=2),
                         outgoing=outgoing(tenant, customer_id, key))
    assert message_id is not None
    session.execute(update(Message).where(col(Message.id) == message_id).values(
        status=MessageStatus.SENT.value, sent_at=NOW - timedelta(hours=1)))
    session.commit()
    return message_id


def the_order(session: Session, tenant: str, order_id: str) -> Order:
    return session.exec(select(Order).where(Order.tenant == tenant, Order.order_id == order_id)
                        .execution_options(populate_existing=True)).one()


# --- spend is what was paid -------------------------------------------------------------------


def test_spend_is_what_the_customer_paid_not_list_price_times_quantity(
    session: Session, tenant: str,
) -> None:
    """Juan paid 858.65 for a washer and a dryer listed at 1,298: his spend is 858.65,
    and a credit for crossing 1,000 waits until his payments do cross it."""
    scenarios(session, tenant, SPEND_1000)
    juan = new_customer(session, tenant)
    assert send(session, tenant, order("o-1", total="858.65")).ignored is None
    assert lifetime_spend(session, [juan]) == {juan: {"EUR": Decimal("858.65")}}
    assert spend_changes(session, juan) == [("o-1", "EUR", "0.00", "858.65")]
    run(session, NOW)
    assert ledger(session, juan) == []

    send(session, tenant, order("o-2", total="141.35", items=[HOSES],
                                at=NOW + timedelta(hours=1)))
    assert spend_changes(session, juan)[-1] == ("o-2", "EUR", "858.65", "1000.00")
    run(session, NOW + timedelta(hours=1))
    assert ledger(session, juan) == [(Decimal("27.00"), "o-2", False)]


def test_the_same_order_under_a_new_event_id_crosses_no_threshold_again(
    session: Session, tenant: str,
) -> None:
    scenarios(session, tenant, SPEND_1000)
    juan = new_customer(session, tenant)
    offer = save_offer(session, tenant=tenant, key="dryers-20")
    coupon = issue_coupon(session, tenant=tenant, customer_id=juan, offer=offer,
                          valid_for=timedelta(days=7), idempotency_key="c1", now=NOW)
    assert coupon is not None
    session.commit()
    send(session, tenant, order("o-1", total="1200.00"))
    run(session, NOW)
    assert ledger(session, juan) == [(Decimal("27.00"), "o-1", False)]
    counts = {kind: len(triggers(session, juan, kind)) for kind in TriggerKind}

    # The shop re-sends the order under a new event id, now naming a coupon as well.
    again = send(session, tenant, order("o-1", total="1200.00", event_id="evt-o-1-retry",
                                        coupons=[coupon.code]))
    assert (again.stored, again.ignored) == (True, Ignored.DUPLICATE_ORDER)
    # The very same event id again: not even stored.
    assert send(session, tenant, order("o-1", event_id="evt-o-1-retry")).stored is False
    run(session, NOW + timedelta(minutes=5))
    assert {kind: len(triggers(session, juan, kind)) for kind in TriggerKind} == counts
    assert ledger(session, juan) == [(Decimal("27.00"), "o-1", False)]
    assert lifetime_spend(session, [juan]) == {juan: {"EUR": Decimal("1200.00")}}
    assert session.exec(select(func.count()).select_from(OrderLine)).one() == 2
    assert session.exec(select(func.count()).select_from(CommerceEvent)).one() == 2
    session.refresh(coupon)
    assert coupon.redeemed_at is None  # the repeat redeemed nothing


def test_spend_is_counted_per_currency(session: Session, tenant: str) -> None:
    scenarios(session, tenant, SPEND_1000)
    juan = new_customer(session, tenant)
    send(session, tenant, order("o-eur", total="600.00"))
    send(session, tenant, order("o-usd", total="500.00", currency="USD",
                                at=NOW + timedelta(minutes=1)))
    assert lifetime_spend(session, [juan]) == {
        juan: {"EUR": Decimal("600.00"), "USD": Decimal("500.00")}}
    assert spend_changes(session, juan) == [("o-eur", "EUR", "0.00", "600.00"),
                                            ("o-usd", "USD", "0.00", "500.00")]
    run(session, NOW + timedelta(minutes=1))
    assert ledger(session, juan) == []  # 600 EUR and 500 USD are not 1,100 of anything
    facts = facts_of(session, juan)
    assert [evaluate(CONDITION.validate_python(document), facts, {}, LATER) for document in (
        {"spend": {"op": "gte", "value": "500", "currency": "USD"}},
        {"spend": {"op": "gte", "value": "1000", "currency": "EUR"}},
        {"spend": {"op": "gte", "value": "550"}},  # any currency: the euros do
        {"spend": {"op": "lt", "value": "550"}},  # any currency: the dollars do
        {"spend": {"op": "gt", "value": "0", "currency": "GBP"}},
    )] == [True, False, True, True, False]


# --- cancellation -----------------------------------------------------------------------------


def test_cancelling_an_order_takes_back_spend_credit_conversion_and_purchases(
    session: Session, tenant: str,
) -> None:
    scenarios(session, tenant, ORDER_CREDIT)
    juan = new_customer(session, tenant)
    push = sent_message(session, tenant, juan, "push-1")
    send(session, tenant, order("o-1", total="858.65"))
    run(session, NOW)
    assert ledger(session, juan) == [(Decimal("10.00"), "o-1", False)]
    message = session.get(Message, push)
    assert message is not None
    assert (message.converted_at, message.conversion_order_id) == (NOW, "o-1")
    assert {p.category for p in facts_of(session, juan).purchases} == {"washers", "dryers"}
    assert funnel(session, tenant=tenant, since=NOW - timedelta(days=1),
                  until=LATER)[0].converted == 1
    journeys = session.exec(select(Journey)).all()
    assert report_rows(session, journeys)[0].converted == 1

    receipt = send(session, tenant, cancel("o-1", reason="customer changed their mind"))
    assert (receipt.stored, receipt.ignored) == (True, None)
    assert receipt.customer_id is not None  # the order's customer, though the event named none
    cancelled = the_order(session, tenant, "o-1")
    assert (cancelled.status, cancelled.cancelled_at) == (OrderStatus.CANCELLED, LATER)
    assert cancelled.cancel_reason == "customer changed their mind"
    assert spend_changes(session, juan)[-1] == ("o-1", "EUR", "858.65", "0.00")
    assert triggers(session, juan, TriggerKind.ORDER_CANCELLED) == [
        {"order_id": "o-1", "total": "858.65", "currency": "EUR",
         "reason": "customer changed their mind"}]
    assert ledger(session, juan) == [(Decimal("10.00"), "o-1", False),
                                     (Decimal("-10.00"), "o-1", True)]
    assert loyalty_balance(session, customer_id=juan, currency="EUR") == Decimal("0.00")
    session.expire_all()
    message = session.get(Message, push)
    assert message is not None
    assert message.conversion_reversed_at == LATER
    assert (message.converted_at, message.conversion_order_id) == (NOW, "o-1")  # the record
    facts = facts_of(session, juan)
    assert facts.purchases == ()
    assert facts.spend == {}
    assert [m.converted_at for m in facts.messages] == [None]
    assert funnel(session, tenant=tenant, since=NOW - timedelta(days=1),
                  until=LATER)[0].converted == 0
    assert report_rows(session, journeys)[0].converted == 0

    # Told again, under a new event id: nothing changes twice.
    counts = {kind: len(triggers(session, juan, kind)) for kind in TriggerKind}
    again = send(session, tenant, cancel("o-1", event_id="cancel-o-1-again"))
    assert again.ignored is Ignored.ALREADY_CANCELLED
    assert send(session, tenant, cancel("o-1")).stored is False
    assert {kind: len(triggers(session, juan, kind)) for kind in TriggerKind} == counts
    assert len(ledger(session, juan)) == 2
    run(session, LATER)
    assert len(ledger(session, juan)) == 2


def test_a_message_whose_conversion_was_reversed_converts_again_by_a_later_order(
    session: Session, tenant: str,
) -> None:
    juan = new_customer(session, tenant)
    push = sent_message(session, tenant, juan, "push-1")
    send(session, tenant, order("o-1"))
    send(session, tenant, cancel("o-1", at=NOW + timedelta(hours=1)))
    send(session, tenant, order("o-2", at=NOW + timedelta(hours=2)))
    session.expire_all()
    message = session.get(Message, push)
    assert message is not None
    assert (message.conversion_order_id, message.conversion_reversed_at) == ("o-2", None)
    assert [one["order_id"] for one in triggers(session, juan, TriggerKind.MESSAGE_CONVERTED)
            ] == ["o-1", "o-2"]


def test_credit_granted_after_the_cancellation_or_a_refund_counts_only_what_is_left(
    session: Session, tenant: str,
) -> None:
    """A credit step that runs after its order was cancelled grants nothing (the journey
    log says why); after a partial refund, the credit less the refunded share."""
    delayed = {**ORDER_CREDIT, "steps": [
        {"id": "pause", "type": "wait", "for": "PT1H"}, *ORDER_CREDIT["steps"]]}
    scenarios(session, tenant, delayed)
    juan = new_customer(session, tenant)
    send(session, tenant, order("o-1", total="200.00"))
    send(session, tenant, order("o-2", total="200.00", items=[HOSES]))
    run(session, NOW)
    send(session, tenant, cancel("o-1", at=NOW + timedelta(minutes=10)))
    send(session, tenant, refund("o-2", "r-1", "50.00", at=NOW + timedelta(minutes=10)))
    run(session, NOW + timedelta(hours=1))
    assert ledger(session, juan) == [(Decimal("10.00"), "o-2", False),
                                     (Decimal("-2.50"), "o-2", True)]
    logs = session.exec(select(JourneyLog.step, JourneyLog.outcome, JourneyLog.detail)
                        .order_by(col(JourneyLog.id))).all()
    assert ("credit", "not_credited", "order o-1 was cancelled") in logs


def test_a_refund_of_a_cancelled_order_is_recorded_and_changes_nothing_else(
    session: Session, tenant: str,
) -> None:
    juan = new_customer(session, tenant)
    send(session, tenant, order("o-1", total="300.00"))
    send(session, tenant, cancel("o-1"))
    counts = {kind: len(triggers(session, juan, kind)) for kind in TriggerKind}
    receipt = send(session, tenant, refund("o-1", "r-1", "300.00"))
    assert receipt.ignored is Ignored.ORDER_CANCELLED
    assert the_order(session, tenant, "o-1").refunded == Decimal("300.00")
    assert the_order(session, tenant, "o-1").status == OrderStatus.CANCELLED
    assert {kind: len(triggers(session, juan, kind)) for kind in TriggerKind} == counts


# --- refunds ----------------------------------------------------------------------------------


def test_a_partial_refund_takes_back_its_share_and_a_full_one_everything(
    session: Session, tenant: str,
) -> None:
    scenarios(session, tenant, ORDER_CREDIT)
    juan = new_customer(session, tenant)
    push = sent_message(session, tenant, juan, "push-1")
    washer = {**WASHER, "unit_price": "175.00"}
    hoses = {**HOSES, "unit_price": "12.50"}
    send(session, tenant, order("o-1", total="200.00", items=[washer, hoses]))
    run(session, NOW)

    # Both hoses back, 25 of the 200 paid: an eighth of the credit goes, the sale stays.
    first = send(session, tenant, refund("o-1", "r-1", "25.00",
                                         items=[{"sku": "HOSE-2M", "quantity": 2}]))
    assert first.ignored is None
    assert lifetime_spend(session, [juan]) == {juan: {"EUR": Decimal("175.00")}}
    assert spend_changes(session, juan)[-1] == ("o-1", "EUR", "200.00", "175.00")
    assert triggers(session, juan, TriggerKind.ORDER_REFUNDED) == [
        {"order_id": "o-1", "refund_id": "r-1", "amount": "25.00", "currency": "EUR",
         "full": False, "skus": ["HOSE-2M"]}]
    assert ledger(session, juan) == [(Decimal("10.00"), "o-1", False),
                                     (Decimal("-1.25"), "o-1", True)]
    message = session.get(Message, push)
    assert message is not None
    assert message.conversion_reversed_at is None  # a partial refund keeps the sale
    assert the_order(session, tenant, "o-1").status == OrderStatus.PLACED
    # Every hose came back: they are no purchase any more; the washer still is.
    assert {p.sku for p in facts_of(session, juan).purchases} == {"WM-8KG"}

    # The same refund under a new event id: recognised by its refund id.
    counts = {kind: len(triggers(session, juan, kind)) for kind in TriggerKind}
    assert send(session, tenant, refund("o-1", "r-1", "25.00", event_id="evt-r-1-again",
                                        items=[{"sku": "HOSE-2M", "quantity": 2}])
                ).ignored is Ignored.DUPLICATE_REFUND
    assert {kind: len(triggers(session, juan, kind)) for kind in TriggerKind} == counts
    assert len(ledger(session, juan)) == 2

    # The rest of the money (the washer kept): refunded in full, it counts for nothing.
    send(session, tenant, refund("o-1", "r-2", "175.00", at=LATER + timedelta(days=1)))
    refunded = the_order(session, tenant, "o-1")
    assert (refunded.status, refunded.refunded) == (OrderStatus.REFUNDED, Decimal("200.00"))
    assert lifetime_spend(session, [juan]) == {juan: {"EUR": Decimal("0.00")}}
    assert spend_changes(session, juan)[-1] == ("o-1", "EUR", "175.00", "0.00")
    assert ledger(session, juan) == [(Decimal("10.00"), "o-1", False),
                                     (Decimal("-1.25"), "o-1", True),
                                     (Decimal("-8.75"), "o-1", True)]
    session.expire_all()
    message = session.get(Message, push)
    assert message is not None
    assert message.conversion_reversed_at == LATER + timedelta(days=1)
    assert facts_of(session, juan).purchases == ()
    assert triggers(session, juan, TriggerKind.ORDER_REFUNDED)[-1]["full"] is True

    # Nothing is left to refund: another refund is refused, and not stored.
    with pytest.raises(RefundRefusedError, match=r"more than the 0\.00 EUR left"):
        send(session, tenant, refund("o-1", "r-3", "0.01"))
    session.rollback()
    assert session.exec(select(func.count()).select_from(CommerceEvent).where(
        CommerceEvent.event_id == "evt-r-3")).one() == 0


def test_refunds_an_order_cannot_take_are_refused_with_a_422_and_can_be_sent_again(
    engine: Engine, migrated_url: str, tenant: str,
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, webhook_secrets=[SECRET])
    with TestClient(create_app(settings, engine=engine, now=lambda: LATER)) as client:
        with session_scope(engine) as session:
            new_customer(session, tenant)
            send(session, tenant, order("o-1", total="649.00", items=[WASHER, HOSES]))

        def post(body: dict[str, Any]) -> Any:
            raw = json.dumps(body).encode()
            stamp = int(LATER.timestamp())
            return client.post(f"/webhooks/{tenant}", content=raw, headers={
                TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(SECRET, stamp, raw),
                "content-type": "application/json"})

        refused = {
            "in USD; order o-1 was paid in EUR": refund("o-1", "r-1", "10.00", currency="USD"),
            "is more than the 649.00 EUR left": refund("o-1", "r-1", "700.00"),
            "takes back 1 of DR-9KG; order o-1 has 0 of it left": refund(
                "o-1", "r-1", "10.00", items=[{"sku": "DR-9KG", "quantity": 1}]),
            "takes back 3 of HOSE-2M; order o-1 has 2 of it left": refund(
                "o-1", "r-1", "10.00", items=[{"sku": "HOSE-2M", "quantity": 2},
                                             {"sku": "HOSE-2M", "quantity": 1}]),
        }
        for problem, body in refused.items():
            answer = post(body)
            assert answer.status_code == 422, answer.text
            assert problem in answer.json()["detail"]
        # None was stored: the corrected refund goes through under the same event id.
        fixed = post(refund("o-1", "r-1", "50.00", items=[{"sku": "HOSE-2M", "quantity": 2}]))
        assert fixed.status_code == 202, fixed.text
        assert fixed.json()["stored"] is True
        assert fixed.json()["ignored"] is None
        unknown = post(cancel("o-404"))
        assert (unknown.status_code, unknown.json()["ignored"]) == (202, "unknown_order")

        bad = [
            ({**refund("o-1", "r-9", "10.00"), "refund_id": "has space"}, "refund_id"),
            (refund("o-1", "r-9", "0.00"), "amount"),
            (refund("o-1", "r-9", "-5.00"), "amount"),
            (refund("o-1", "r-9", "1.001"), "amount"),
            (refund("o-1", "r-9", "10.00", currency="eur"), "currency"),
            (refund("o-1", "r-9", "10.00", items=[{"sku": "HOSE-2M", "quantity": 0}]),
             "quantity"),
            ({key: value for key, value in refund("o-1", "r-9", "1.00").items()
              if key != "refund_id"}, "refund_id"),
            ({**cancel("o-1"), "reason": "x" * 201}, "reason"),
            ({**cancel("o-1"), "refund_id": "r-1"}, "refund_id"),
            ({key: value for key, value in cancel("o-1").items() if key != "order_id"},
             "order_id"),
        ]
        for body, field in bad:
            answer = post(body)
            assert answer.status_code == 422, (body, answer.text)
            assert field in answer.json()["detail"], (field, answer.json())
    with session_scope(engine) as session:
        assert [row.refund_id for row in session.exec(select(OrderRefund)).all()] == ["r-1"]


def test_events_about_an_order_never_received_are_stored_and_do_nothing(
    session: Session, tenant: str,
) -> None:
    juan = new_customer(session, tenant)
    assert send(session, tenant, {**cancel("o-404"), "customer": {"external_id": "juan"}}
                ).ignored is Ignored.UNKNOWN_ORDER
    receipt = send(session, tenant, refund("o-404", "r-1", "10.00"))
    assert (receipt.stored, receipt.ignored) == (True, Ignored.UNKNOWN_ORDER)
    assert session.exec(select(func.count()).select_from(CommerceEvent)).one() == 2
    assert session.exec(select(func.count()).select_from(Trigger).where(
        Trigger.customer_id == juan)).one() == 0
    assert session.exec(select(func.count()).select_from(OrderRefund)).one() == 0


# --- coupons ----------------------------------------------------------------------------------


def test_a_cancelled_orders_coupon_is_given_back_only_when_its_offer_says_so(
    session: Session, tenant: str,
) -> None:
    juan = new_customer(session, tenant)
    given_back = save_offer(session, tenant=tenant, key="dryers-20", reissue_on_cancel=True)
    kept = save_offer(session, tenant=tenant, key="dryers-10", discount_percent=10)
    short = save_offer(session, tenant=tenant, key="dryers-5", discount_percent=5,
                       reissue_on_cancel=True)
    coupons = {}
    for offer, valid_for in ((given_back, timedelta(days=7)), (kept, timedelta(days=7)),
                             (short, timedelta(days=1))):
        coupon = issue_coupon(session, tenant=tenant, customer_id=juan, offer=offer,
                              valid_for=valid_for, idempotency_key=offer.key, now=NOW)
        assert coupon is not None
        coupons[offer.key] = coupon
    session.commit()
    codes = [coupon.code for coupon in coupons.values()]
    send(session, tenant, order("o-1", coupons=codes))
    assert all(coupon.order_id == "o-1" for coupon in coupons.values())

    send(session, tenant, cancel("o-1"))  # two days on: the 1-day coupon has expired
    for coupon in coupons.values():
        session.refresh(coupon)
    back = coupons["dryers-20"]
    assert (back.redeemed_at, back.order_id) == (None, None)
    assert (back.reissued_at, back.reissued_from_order_id) == (LATER, "o-1")
    for key in ("dryers-10", "dryers-5"):
        assert (coupons[key].redeemed_at, coupons[key].order_id) == (NOW, "o-1")
        assert coupons[key].reissued_at is None

    # Given back, it is redeemed again by the next order, with a trigger of its own.
    send(session, tenant, order("o-2", coupons=codes, at=LATER + timedelta(hours=1)))
    session.refresh(back)
    assert (back.redeemed_at, back.order_id) == (LATER + timedelta(hours=1), "o-2")
    assert [one["order_id"] for one in triggers(session, juan, TriggerKind.COUPON_REDEEMED)
            ] == ["o-1", "o-1", "o-1", "o-2"]
    assert session.exec(select(func.count()).select_from(Coupon).where(
        Coupon.order_id == "o-2")).one() == 1
