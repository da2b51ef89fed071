import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from cloud.commerce.models import LineItem
from cloud.customers.models import Customer
from cloud.db import session_scope
from cloud.erasure import erase_customer
from cloud.offers import crud
from cloud.offers.models import ComplementRuleCreate, Coupon, Offer, OfferCreate
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.models import Journey
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.settings import ScenarioSettings
from cloud.triggers import Trigger, TriggerKind
from tests.cloud.offers.factories import (
    DRYER,
    NOW,
    WASHER,
    coupons_counted,
    new_customer,
    offer_body,
    order_event,
    place_order,
    refused,
    save_offer,
)

DAY = timedelta(days=1)
DRYERS_20 = "dryers-20"


def rules(*triples: tuple[str, str, int]) -> list[ComplementRuleCreate]:
    return [ComplementRuleCreate(from_category=a, to_category=b, priority=p) for a, b, p in triples]


def issue(
    session: Session, tenant: str, customer_id: int, offer: Offer, key: str, *,
    valid_for: timedelta = DAY, now: datetime = NOW,
) -> Coupon | None:
    return crud.issue_coupon(
        session, tenant=tenant, customer_id=customer_id, offer=offer, valid_for=valid_for,
        idempotency_key=key, now=now,
    )


def test_offers_are_upserted_by_key_and_their_terms_fixed_once_coupons_exist(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        first, created = crud.upsert_offer(
            session, tenant=tenant, key=DRYERS_20, now=NOW,
            data=OfferCreate.model_validate(offer_body(valid_from=None)),
        )
        assert created
        assert first.valid_from == NOW  # no start given: from now
        renamed, created = crud.upsert_offer(
            session, tenant=tenant, key=DRYERS_20, now=NOW + DAY,
            data=OfferCreate.model_validate(offer_body(name="Dryers, autumn", valid_from=None)),
        )
        assert not created
        assert renamed.id == first.id
        assert renamed.valid_from == NOW  # kept, not moved to the edit's time
        with pytest.raises(crud.OfferError, match="valid_until"):
            save_offer(session, tenant=tenant, key=DRYERS_20, valid_from=None,
                       valid_until="2026-11-22T00:00:00Z")
        customer = new_customer(session, tenant=tenant, name="juan")
        assert issue(session, tenant, customer, renamed, "k1") is not None
        with pytest.raises(crud.OfferTermsFixedError, match="discount_percent, price"):
            save_offer(session, tenant=tenant, key=DRYERS_20, discount_percent=25, price="599.00")
        extended = save_offer(session, tenant=tenant, key=DRYERS_20, coupon_limit=10,
                              valid_until="2027-01-01T00:00:00Z")
        assert (extended.coupons_issued, extended.coupon_limit) == (1, 10)
        assert crud.get_offer(session, tenant="other", key=DRYERS_20) is None
        gone = crud.deactivate_offer(session, tenant=tenant, key=DRYERS_20, now=NOW)
        assert gone is not None
        assert not gone.active
        assert [o.key for o in crud.list_offers(session, tenant=tenant)] == [DRYERS_20]
        assert crud.list_offers(session, tenant=tenant, active_only=True) == []
        assert crud.deactivate_offer(session, tenant=tenant, key="nope", now=NOW) is None
        session.commit()


def test_cross_sell_follows_complements_and_never_offers_what_was_bought(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        juan = new_customer(session, tenant=tenant, name="juan")
        crud.replace_complements(session, tenant=tenant, rules=rules(
            ("washers", "dryers", 10), ("washers", "detergent", 20), ("dryers", "detergent", 5),
        ))
        crud.replace_complements(session, tenant="other", rules=rules(("washers", "ovens", 0)))
        save_offer(session, tenant=tenant, key="dryers-50", discount_percent=50)
        save_offer(session, tenant=tenant, key=DRYERS_20)
        save_offer(session, tenant=tenant, key="dryer-dr9", sku="DR-9KG", discount_percent=15)
        save_offer(session, tenant=tenant, key="dryers-ended", discount_percent=5,
                   valid_until="2026-11-20T00:00:00Z")
        save_offer(session, tenant=tenant, key="dryers-sold-out", discount_percent=5,
                   coupon_limit=0)
        save_offer(session, tenant=tenant, key="detergent-10", category="detergent",
                   discount_percent=10, price="12.00")
        save_offer(session, tenant=tenant, key="ovens-30", category="ovens", discount_percent=30)
        place_order(session, tenant=tenant,
                    event=order_event(name="juan", order_id="o-1", items=[WASHER]))

        def chosen(*categories: str) -> str | None:
            offer = cross_sell(session, tenant=tenant, customer_id=juan,
                               from_categories=categories)
            return offer.key if offer else None

        assert crud.bought_items(session, customer_ids=[juan]) == {
            juan: crud.Bought(categories=frozenset({"washers"}), skus=frozenset({"WM-8KG"}))}
        # the smallest valid discount on the best-priority category; ended/sold-out skipped
        assert chosen("washers") == "dryer-dr9"
        assert chosen("accessories") is None
        assert chosen() is None
        place_order(session, tenant=tenant,
                    event=order_event(name="juan", order_id="o-2", items=[DRYER]))
        # a dryer bought: nothing on dryers any more, the next rule's category instead
        assert chosen("washers") == "detergent-10"
        assert chosen("dryers", "washers") == "detergent-10"
        crud.deactivate_offer(session, tenant=tenant, key="detergent-10", now=NOW)
        assert chosen("washers") is None
        assert [(r.from_category, r.to_category, r.priority)
                for r in crud.list_complements(session, tenant=tenant)] == [
            ("dryers", "detergent", 5), ("washers", "dryers", 10), ("washers", "detergent", 20),
        ]
        with pytest.raises(crud.OfferError, match="only once"):
            crud.replace_complements(session, tenant=tenant, rules=rules(
                ("washers", "dryers", 1), ("washers", "dryers", 2)))
        session.commit()


def cross_sell(
    session: Session, *, tenant: str, customer_id: int, from_categories: Sequence[str]
) -> Offer | None:
    """The cross-sell offer at NOW from the tenant's stored rules and offers and what the
    customer bought and kept, as the engine's batch loads them."""
    return crud.pick_cross_sell(
        crud.list_complements(session, tenant=tenant), crud.tenant_offers(session, tenant=tenant),
        bought=crud.bought_items(session, customer_ids=[customer_id])[customer_id],
        from_categories=from_categories, now=NOW,
    )


def test_cross_sell_skips_a_product_already_bought_and_an_offer_over_budget(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        ana = new_customer(session, tenant=tenant, name="ana")
        crud.replace_complements(session, tenant=tenant, rules=rules(("washers", "dryers", 1)))
        place_order(session, tenant=tenant, event=order_event(
            name="ana", order_id="o-1", items=[WASHER, DRYER.model_copy(update={
                "category": "clearance"})]))
        save_offer(session, tenant=tenant, key="dr9", sku="DR-9KG", discount_percent=5)
        save_offer(session, tenant=tenant, key="dryers-budget", discount_percent=10,
                   budget_limit="69.89")  # one coupon promises 69.90
        save_offer(session, tenant=tenant, key="dryers-30", discount_percent=30)
        offer = cross_sell(session, tenant=tenant, customer_id=ana, from_categories=["washers"])
        assert offer is not None
        assert offer.key == "dryers-30"


def test_coupons_are_single_use_codes_issued_once_per_idempotency_key(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        juan = new_customer(session, tenant=tenant, name="juan")
        ana = new_customer(session, tenant=tenant, name="ana")
        offer = save_offer(session, tenant=tenant, key=DRYERS_20, coupon_limit=2,
                           valid_until="2026-11-24T00:00:00Z")
        before = coupons_counted("issued")
        coupon = issue(session, tenant, juan, offer, "journey-1:step-2")
        assert coupon is not None
        assert re.fullmatch(r"DRYERS20-[0-9A-HJKMNP-TV-Z]{10}", coupon.code)
        assert coupon.expires_at == NOW + timedelta(hours=12)  # capped at the offer's end
        again = issue(session, tenant, juan, offer, "journey-1:step-2", now=NOW + DAY)
        assert again is not None
        assert again.id == coupon.id
        with pytest.raises(crud.CouponConflictError):
            issue(session, tenant, ana, offer, "journey-1:step-2")
        assert issue(session, tenant, ana, offer, "journey-9:step-2") is not None
        assert issue(session, tenant, juan, offer, "journey-1:step-3") is None  # stock: 2
        assert coupons_counted("issued") - before == 2
        session.commit()
        stored = crud.get_offer(session, tenant=tenant, key=DRYERS_20)
        assert stored is not None
        assert stored.coupons_issued == 2
        assert stored.budget_used == Decimal("279.60")
        assert len(session.exec(select(Coupon)).all()) == 2  # the refused one was taken back
        with pytest.raises(ValueError, match="valid_for"):
            issue(session, tenant, juan, offer, "k", valid_for=timedelta(0))
        with pytest.raises(ValueError, match="customer"):
            issue(session, tenant, 999_999, offer, "k")
        later = save_offer(session, tenant=tenant, key="later",
                           valid_from="2026-12-01T00:00:00Z")
        assert issue(session, tenant, juan, later, "k-later") is None
        crud.deactivate_offer(session, tenant=tenant, key="later", now=NOW)
        assert issue(session, tenant, juan, later, "k-later",
                     now=NOW + timedelta(days=10)) is None


def test_the_budget_counts_in_cents_on_both_databases(engine: Engine, tenant: str) -> None:
    """0.10 three times is 0.30, not 0.30000000000000004 (SQLite keeps NUMERIC as float)."""
    with session_scope(engine) as session:
        juan = new_customer(session, tenant=tenant, name="juan")
        offer = save_offer(session, tenant=tenant, key="socks", category="socks",
                           price="1.00", discount_percent=10, budget_limit="0.30")
        issued = [issue(session, tenant, juan, offer, f"k{i}") for i in range(4)]
        assert [c is not None for c in issued] == [True, True, True, False]
        session.commit()
        stored = crud.get_offer(session, tenant=tenant, key="socks")
        assert stored is not None
        assert stored.budget_used == Decimal("0.30")
        assert crud.is_exhausted(stored)


def test_redemption_is_once_for_the_own_customer_on_an_order_with_the_offer(
    engine: Engine, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cloud.offers")
    with session_scope(engine) as session:
        juan = new_customer(session, tenant=tenant, name="juan")
        ana = new_customer(session, tenant=tenant, name="ana")
        dryers = save_offer(session, tenant=tenant, key=DRYERS_20)
        dr9 = save_offer(session, tenant=tenant, key="dr9", sku="DR-9KG", category="dryers")
        first = issue(session, tenant, juan, dryers, "a")
        product = issue(session, tenant, juan, dr9, "b", valid_for=timedelta(hours=1))
        hers = issue(session, tenant, ana, dryers, "c")
        assert first is not None
        assert product is not None
        assert hers is not None
        session.commit()
        counts = {reason: refused(reason) for reason in
                  ("malformed", "unknown", "not_owner", "expired", "redeemed", "not_in_order")}

        def redeem(customer: int | None, order_id: str, codes: list[str],
                   items: list[LineItem], ordered_at: datetime | None = None) -> list[str]:
            done = crud.redeem_coupons(
                session, tenant=tenant, customer_id=customer, order_id=order_id, codes=codes,
                items=items, now=NOW + timedelta(hours=2), ordered_at=ordered_at,
            )
            return [coupon.code for coupon in done]

        wrong_line = DRYER.model_copy(update={"sku": "DR-7KG"})
        assert redeem(juan, "o-1", [first.code], [WASHER]) == []  # nothing of its category
        assert redeem(juan, "o-1", ["nope!", "UNKNOWN-1", hers.code], [DRYER]) == []
        assert redeem(None, "o-1", [first.code], [DRYER]) == []  # a guest order
        assert redeem(juan, "o-1", [product.code], [DRYER]) == []  # expired an hour ago
        assert redeem(juan, "o-1", [product.code, first.code.lower()], [DRYER],
                      ordered_at=NOW + timedelta(minutes=30)) == [product.code, first.code]
        assert redeem(juan, "o-1", [first.code], [DRYER]) == []  # the same order again
        assert redeem(juan, "o-2", [first.code], [DRYER]) == []  # another order: used
        assert redeem(ana, "o-3", [hers.code], [wrong_line]) == [hers.code]  # the category
        session.commit()
        assert {reason: refused(reason) - counts[reason] for reason in counts} == {
            "malformed": 1, "unknown": 1, "not_owner": 2, "expired": 1, "redeemed": 1,
            "not_in_order": 1,
        }
        assert "not_owner" in caplog.text
        for code in (first.code, hers.code, product.code, "UNKNOWN-1", "NOPE"):
            assert code not in caplog.text.upper()  # codes are bearer tokens: never logged
        session.refresh(first)
        assert (first.order_id, first.redeemed_at) == ("o-1", NOW + timedelta(minutes=30))
        listed = crud.customer_coupons(session, customer_id=juan)
        assert [coupon.code for coupon, _offer in listed] == [product.code, first.code]
        assert crud.coupon_status(first, now=NOW).value == "redeemed"
        assert crud.coupon_status(hers, now=NOW).value == "redeemed"


def test_a_product_offer_needs_the_product_in_the_order(engine: Engine, tenant: str) -> None:
    with session_scope(engine) as session:
        juan = new_customer(session, tenant=tenant, name="juan")
        dr9 = save_offer(session, tenant=tenant, key="dr9", sku="DR-9KG", category="dryers")
        coupon = issue(session, tenant, juan, dr9, "a")
        assert coupon is not None
        other_dryer = DRYER.model_copy(update={"sku": "DR-7KG"})
        assert crud.redeem_coupons(session, tenant=tenant, customer_id=juan, order_id="o",
                                   codes=[coupon.code], items=[other_dryer], now=NOW) == []
        assert crud.coupon_status(coupon, now=NOW + 2 * DAY).value == "expired"


def test_erasure_takes_the_customers_coupons(engine: Engine, tenant: str) -> None:
    with session_scope(engine) as session:
        juan = new_customer(session, tenant=tenant, name="juan")
        ana = new_customer(session, tenant=tenant, name="ana")
        offer = save_offer(session, tenant=tenant, key=DRYERS_20)
        for customer, key in ((juan, "a"), (juan, "b"), (ana, "c")):
            assert issue(session, tenant, customer, offer, key) is not None
        session.commit()
        profile = session.get(Customer, juan)
        assert profile is not None
        record = erase_customer(session, customer=profile, now=NOW)
        session.commit()
        assert record.counts["coupons"] == 2
        assert [c.customer_id for c in session.exec(select(Coupon)).all()] == [ana]
        stored = crud.get_offer(session, tenant=tenant, key=DRYERS_20)
        assert stored is not None
        assert stored.coupons_issued == 3  # what was promised stays counted


# --- concurrency (PostgreSQL: SQLite serialises writers anyway) --------------------------------


def _in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _wait_until_blocked(engine: Engine, timeout_s: float = 10.0) -> None:
    """Until some other session of this database waits for a row lock."""
    deadline = time.monotonic() + timeout_s
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )).scalar_one()
            if waiting:
                return
            connection.rollback()
            time.sleep(0.01)
    raise AssertionError("the second worker never waited for the first")


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_a_second_worker_waits_and_then_finds_the_last_coupon_gone(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        customers = [new_customer(session, tenant=tenant, name=n) for n in ("juan", "ana")]
        offer_id = save_offer(session, tenant=tenant, key=DRYERS_20, coupon_limit=1).id
        session.commit()
    results: dict[str, Coupon | None] = {}

    def second() -> None:
        with session_scope(engine) as session:
            offer = session.get(Offer, offer_id)
            assert offer is not None
            results["second"] = issue(session, tenant, customers[1], offer, "second")
            session.commit()

    with session_scope(engine) as session:
        offer = session.get(Offer, offer_id)
        assert offer is not None
        results["first"] = issue(session, tenant, customers[0], offer, "first")
        # the second worker read the offer with a coupon still left, and now waits for us
        thread = _in_thread(second)
        _wait_until_blocked(engine)
        session.commit()
    thread.join(timeout=10)
    assert results["first"] is not None
    assert results["second"] is None
    with session_scope(engine) as session:
        stored = session.get(Offer, offer_id)
        assert stored is not None
        assert stored.coupons_issued == 1
        assert len(session.exec(select(Coupon)).all()) == 1


@pytest.mark.parametrize("migrated_url", ["postgresql"], indirect=True)
def test_racing_workers_never_overdraw_stock_budget_or_an_idempotency_key(
    engine: Engine, tenant: str
) -> None:
    workers, attempts = 6, 4
    with session_scope(engine) as session:
        customer = new_customer(session, tenant=tenant, name="juan")
        stock = save_offer(session, tenant=tenant, key="stock", coupon_limit=5).id
        budget = save_offer(session, tenant=tenant, key="budget", category="socks",
                            price="10.00", discount_percent=10, budget_limit="7.00").id
        session.commit()
    assert stock is not None
    assert budget is not None
    start = threading.Barrier(workers)
    issued: list[tuple[int, int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            start.wait(timeout=10)
            for attempt in range(attempts):
                for offer_id, key in ((stock, f"s-{number}-{attempt}"),
                                      (budget, f"b-{number}-{attempt}"),
                                      (stock, "shared-key")):
                    with session_scope(engine) as session:
                        offer = session.get(Offer, offer_id)
                        assert offer is not None
                        coupon = issue(session, tenant, customer, offer, key)
                        session.commit()
                    if coupon is not None:
                        with lock:
                            issued.append((offer_id, coupon.id or 0))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [_in_thread(functools.partial(worker, number)) for number in range(workers)]
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    distinct = set(issued)
    assert len([1 for offer_id, _ in distinct if offer_id == stock]) == 5  # shared key included
    assert len([1 for offer_id, _ in distinct if offer_id == budget]) == 7
    with session_scope(engine) as session:
        counted = {o.key: (o.coupons_issued, o.budget_used) for o in session.exec(select(Offer))}
        assert counted == {"stock": (5, Decimal("699.00")), "budget": (7, Decimal("7.00"))}
        assert len(session.exec(select(Coupon)).all()) == 12


def test_an_order_that_redeems_a_coupon_enters_scenarios_that_ask_for_one(
    engine: Engine, tenant: str
) -> None:
    """The order's trigger carries how many coupons it redeemed: an entry filter on
    `coupons` sees the redemption, and an order without one stays out."""
    spec = ScenarioSpec.model_validate({
        "key": "thanks-for-using-it", "name": "coupon users",
        "entry": {"event": "order.created",
                  "where": [{"attribute": "coupons", "op": "gte", "value": 1}]},
        "steps": [{"id": "pause", "type": "wait", "for": "PT1H"}],
    })
    config = EngineConfig(settings=ScenarioSettings(),
                          links=Links(base_url="https://t.example", secret="s" * 32))
    with session_scope(engine) as session:
        juan = new_customer(session, tenant=tenant, name="juan")
        new_customer(session, tenant=tenant, name="ana")
        dryers = save_offer(session, tenant=tenant, key=DRYERS_20)
        coupon = issue(session, tenant, juan, dryers, "a")
        assert coupon is not None
        save_scenario(session, tenant=tenant, spec=spec, now=NOW)
        session.commit()
        place_order(session, tenant=tenant, event=order_event(
            name="juan", order_id="o-1", items=[DRYER], coupons=[coupon.code]))
        place_order(session, tenant=tenant, event=order_event(
            name="ana", order_id="o-2", items=[DRYER]))
        session.commit()
        orders = session.exec(select(Trigger).where(Trigger.kind == TriggerKind.ORDER_CREATED)
                              .order_by(col(Trigger.id))).all()
        assert [row.attributes["coupons"] for row in orders] == [1, 0]
        # The coupon itself is an entry point too, once, naming its offer and order.
        redeemed = session.exec(select(Trigger).where(
            Trigger.kind == TriggerKind.COUPON_REDEEMED)).all()
        assert [(row.customer_id, row.attributes) for row in redeemed] == [
            (juan, {"order_id": "o-1", "offer_id": dryers.id})]
        report = process_triggers(session, catalog=Catalog(), config=config, now=NOW, limit=10)
        session.commit()
        assert report.started == 1
        started = session.exec(select(Journey)).all()
        assert [journey.customer_id for journey in started] == [juan]


def test_a_coupons_validity_counts_from_when_its_message_can_reach_the_customer(
    engine: Engine, tenant: str
) -> None:
    """Held overnight by quiet hours, a "valid 24 hours" coupon still gets its 24 hours,
    though never past the offer's own end."""
    morning = NOW + timedelta(hours=11)
    with session_scope(engine) as session:
        juan = new_customer(session, tenant=tenant, name="juan")
        offer = save_offer(session, tenant=tenant, key=DRYERS_20)
        held = crud.issue_coupon(session, tenant=tenant, customer_id=juan, offer=offer,
                                 valid_for=DAY, idempotency_key="held", now=NOW,
                                 valid_from=morning)
        assert held is not None
        assert (held.issued_at, held.expires_at) == (NOW, morning + DAY)
        session.commit()
