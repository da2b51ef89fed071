"""Segments in the scenario engine: the checks a save makes (names, cycles, depth, size),
scenarios deciding by a segment's current version and recording it, offers kept to a
segment's members, members counted in batches and the daily counts, and what names a
segment."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.customers.crud import create_customer, record_consent
from cloud.customers.models import ConsentCreate, CustomerCreate
from cloud.db import session_scope
from cloud.scenarios.catalog import Catalog, deactivate_scenario, get_scenario, save_scenario
from cloud.scenarios.conditions import MAX_SEGMENT_DEPTH, evaluate
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.facts import load_facts
from cloud.scenarios.lookups import Lookups
from cloud.scenarios.membership import count_members, members_among, record_daily_counts
from cloud.scenarios.models import CustomerTag, Journey, JourneyStatus
from cloud.scenarios.offers import choose_offer
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.segments import (
    CONDITION,
    MAX_EXPANDED_CONDITIONS,
    MAX_SEGMENT_CONDITIONS,
    SegmentCreate,
    book_of,
    build_book,
    referrers,
    scenario_segment_problems,
    segment_problems,
    versions_decided,
)
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import OfferChoice, ScenarioSpec
from cloud.scenarios.worker import ScenarioWorker
from cloud.segments.crud import (
    archive_segment,
    claim_counting,
    count_history,
    get_segment,
    list_segments,
    save_segment,
)
from cloud.settings import ScenarioSettings
from cloud.triggers import TriggerKind, record_trigger
from tests.cloud.offers.factories import save_offer

TENANT = "shop"
NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
SINCE = "2026-01-01T00:00:00Z"
CONFIG = EngineConfig(settings=ScenarioSettings(),
                      links=Links(base_url="https://t.example", secret="s" * 32))


def book(**segments: Any) -> Any:
    """A book of segments by key (underscores for dashes), each version 1."""
    return book_of({key.replace("_", "-"): (1, CONDITION.validate_python(document))
                    for key, document in segments.items()})


def body(conditions: Any) -> SegmentCreate:
    return SegmentCreate.model_validate({"name": "test", "conditions": conditions})


def scenario_spec(conditions: Any, **changes: Any) -> ScenarioSpec:
    return ScenarioSpec.model_validate({
        "key": "welcome", "name": "Welcome", "entry": {"event": "cart.abandoned"},
        "conditions": conditions, "steps": [{"id": "t", "type": "tag", "add": ["seen"]}],
        **changes,
    })


# --- save-time checks ------------------------------------------------------------------------


def test_a_segment_naming_one_that_does_not_exist_is_refused_with_the_nearest() -> None:
    problems = segment_problems("vip", body({"all": [{"tag": "vip"},
                                                     {"segment": "washer-buyer"}]}),
                                book(washer_buyers={"tag": "w"}), [])
    assert problems == [(("conditions", "all", "all", 1, "segment", "segment"),
                         "segment 'washer-buyer' does not exist (did you mean "
                         "'washer-buyers'?)")]


def test_a_segment_naming_itself_is_refused_as_a_cycle() -> None:
    problems = segment_problems("vip", body({"not": {"segment": "vip"}}),
                                book(vip={"tag": "vip"}), [])
    assert problems == [(("conditions", "not", "not", "segment", "segment"),
                         "segments 'vip' -> 'vip' form a cycle: a segment cannot contain "
                         "itself")]


def test_a_cycle_through_other_segments_is_refused_naming_it() -> None:
    segments = book(a={"segment": "b"}, b={"any": [{"tag": "x"}, {"segment": "c"}]},
                    c={"tag": "c"})
    problems = segment_problems("c", body({"all": [{"tag": "c"}, {"segment": "a"}]}),
                                segments, [])
    assert problems == [(("conditions", "all", "all", 1, "segment", "segment"),
                         "segments 'c' -> 'a' -> 'b' -> 'c' form a cycle: a segment cannot "
                         "contain itself")]
    # The same segments without the loop back are fine.
    assert segment_problems("c", body({"tag": "c"}), segments, []) == []


def test_a_segment_tests_the_customer_not_the_trigger() -> None:
    problems = segment_problems(
        "in-store", body({"trigger": {"attribute": "store", "value": "centro"}}), book(), [])
    assert problems == [(("conditions", "trigger", "trigger"),
                         "a segment describes the customer, not the moment: test the trigger "
                         "in the scenario that names the segment")]


def test_references_deeper_than_the_bound_are_refused() -> None:
    chain = {f"s{index}": {"segment": f"s{index + 1}"} for index in range(MAX_SEGMENT_DEPTH - 1)}
    segments = book(**chain, **{f"s{MAX_SEGMENT_DEPTH - 1}": {"tag": "x"}})
    # The deepest may not name another one: s0 would go one too deep.
    problems = segment_problems(f"s{MAX_SEGMENT_DEPTH - 1}", body({"segment": "leaf"}),
                                book_of({**{k: (1, v.condition) for k, v in segments.items()},
                                         "leaf": (1, CONDITION.validate_python({"tag": "y"}))}),
                                [])
    assert problems == [((), f"segment 's0', which names it, would name segments "
                             f"{MAX_SEGMENT_DEPTH + 1} deep; at most {MAX_SEGMENT_DEPTH} "
                             "(counting the segment itself)")]


def test_a_segment_too_large_with_what_it_names_is_refused() -> None:
    wide = {"any": [{"tag": f"t{index}"} for index in range(20)]}
    ten = {"all": [wide] * 10}  # 1 + 10 x 21 = 211 conditions
    problems = segment_problems("big", body(ten), book(), [])
    assert problems == [((), f"it would hold 211 conditions with the segments it names; a "
                             f"segment may hold {MAX_SEGMENT_CONDITIONS}")]
    nine = {"all": [wide] * 9}  # 190, plus the segment condition naming a 10-condition one
    segments = book(small={"all": [{"tag": f"t{index}"} for index in range(10)]})
    assert segment_problems("big", body({"all": [nine, {"segment": "small"}]}), segments,
                            []) == [((), "it would hold 203 conditions with the segments it "
                                         f"names; a segment may hold {MAX_SEGMENT_CONDITIONS}")]


def test_a_scenario_naming_an_unknown_segment_or_too_large_with_them_is_refused() -> None:
    segments = book(washer_buyers={"tag": "w"})
    spec = scenario_spec({"any": [{"segment": "washer-buyers"}, {"segment": "washers"}]})
    assert scenario_segment_problems(spec, segments) == [
        (("conditions", "any", "any", 1, "segment", "segment"),
         "segment 'washers' does not exist (did you mean 'washer-buyers'?)")]
    wide = {"any": [{"tag": f"t{index}"} for index in range(19)]}  # 20 each
    big = book(big={"all": [wide] * 9})  # 181
    spec = scenario_spec({"any": [{"segment": "big"}] * 6})  # 1 + 6 x 182 = 1093
    assert scenario_segment_problems(spec, big) == [
        ((), f"1093 conditions with the segments named expanded; a scenario may hold "
             f"{MAX_EXPANDED_CONDITIONS}")]


# --- the engine ------------------------------------------------------------------------------


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_scope(engine) as session:
        yield session


def customer(session: Session, name: str, *tags: str, push: bool = False) -> int:
    row = create_customer(session, tenant=TENANT, now=NOW,
                          data=CustomerCreate(external_id=name, first_name=name.title()))
    assert row.id is not None
    session.add_all(CustomerTag(customer_id=row.id, tag=tag, added_at=NOW) for tag in tags)
    if push:
        record_consent(session, customer=row, now=NOW,
                       data=ConsentCreate(channel="push", granted=True, source="app"))
    session.commit()
    return row.id


def segment(session: Session, key: str, conditions: Any, at: datetime = NOW) -> None:
    save_segment(session, tenant=TENANT, key=key, name=key, description="",
                 conditions=conditions, now=at)
    session.commit()


def scenario(session: Session, document: dict[str, Any]) -> None:
    spec = ScenarioSpec.model_validate({
        "name": "test", "entry": {"event": "cart.abandoned", "reentry": "always"},
        "steps": [{"id": "t", "type": "tag", "add": ["seen"]}], **document})
    save_scenario(session, tenant=TENANT, spec=spec, now=NOW)
    session.commit()


def cart(session: Session, catalog: Catalog, source: str, *customers: int) -> None:
    for customer_id in customers:
        record_trigger(session, tenant=TENANT, customer_id=customer_id,
                       kind=TriggerKind.CART_ABANDONED, occurred_at=NOW,
                       source_key=f"{source}:{customer_id}", now=NOW)
    session.commit()
    process_triggers(session, catalog=catalog, config=CONFIG, now=NOW, limit=100)
    session.commit()
    session.expire_all()


def started(session: Session, key: str) -> dict[int, list[dict[str, Any]]]:
    """Each customer's journeys of scenario `key`: the segment versions they record."""
    found: dict[int, list[dict[str, Any]]] = {}
    for journey in session.exec(select(Journey).where(Journey.scenario_key == key)
                                .order_by(col(Journey.id))):
        found.setdefault(journey.customer_id, []).append(journey.context.get("segments", {}))
    return found


def test_a_scenario_decides_by_the_segments_current_version_and_records_it(
    session: Session,
) -> None:
    ana, ben = customer(session, "ana", "washer-buyer"), customer(session, "ben", "vip")
    segment(session, "buyers", {"tag": "washer-buyer"})
    segment(session, "buyers-reachable", {"all": [{"segment": "buyers"}, {"not": {"tag": "x"}}]})
    scenario(session, {"key": "cross", "conditions": {"segment": "buyers-reachable"}})
    catalog = Catalog()
    cart(session, catalog, "first", ana, ben)
    assert started(session, "cross") == {ana: [{"buyers": 1, "buyers-reachable": 1}]}

    # Changing the segment changes the scenario: the same (cached) catalog sees it.
    segment(session, "buyers", {"any": [{"tag": "washer-buyer"}, {"tag": "vip"}]})
    cart(session, catalog, "second", ana, ben)
    assert started(session, "cross") == {
        ana: [{"buyers": 1, "buyers-reachable": 1}, {"buyers": 2, "buyers-reachable": 1}],
        ben: [{"buyers": 2, "buyers-reachable": 1}]}
    assert versions_decided(journey.context for journey in session.exec(select(Journey))) == {
        ("buyers", 1): 1, ("buyers", 2): 2, ("buyers-reachable", 1): 3}


def test_a_branch_on_a_segment_records_the_version_it_went_by(session: Session) -> None:
    ana, ben = customer(session, "ana", "vip"), customer(session, "ben")
    segment(session, "vips", {"tag": "vip"})
    scenario(session, {"key": "branchy", "steps": [
        {"id": "b", "type": "branch", "if": {"segment": "vips"}, "then": "vip", "else": "end"},
        {"id": "vip", "type": "tag", "add": ["greeted"]}]})
    cart(session, Catalog(), "t", ana, ben)
    assert started(session, "branchy") == {ana: [{"vips": 1}], ben: [{"vips": 1}]}
    greeted = session.exec(select(CustomerTag.customer_id).where(CustomerTag.tag == "greeted"))
    assert list(greeted) == [ana]
    assert all(journey.status == JourneyStatus.DONE for journey in session.exec(select(Journey)))


def test_the_catalog_loads_what_the_segments_read(session: Session) -> None:
    segment(session, "buyers", {"purchased": {"category": "washers"}})
    scenario(session, {"key": "cross", "conditions": {"segment": "buyers"}})
    catalog = Catalog().tenant(session, TENANT)
    assert catalog.scenarios["cross"].segments["buyers"].version == 1
    assert {str(kind) for kind in catalog.facts} == {"purchases"}


def test_an_offer_kept_to_a_segment_goes_only_to_its_members(session: Session) -> None:
    ana, ben = customer(session, "ana", "washer-buyer"), customer(session, "ben")
    segment(session, "buyers", {"tag": "washer-buyer"})
    save_offer(session, tenant=TENANT, key="dryers-buyers", segment="buyers",
               discount_percent=30, valid_from=SINCE)
    save_offer(session, tenant=TENANT, key="dryers-all", discount_percent=10, valid_from=SINCE)
    session.commit()
    segments = build_book(list_segments(session, tenant=TENANT))
    facts = load_facts(session, customer_ids=[ana, ben], now=NOW)

    def chosen(customer_id: int, choice: OfferChoice, **kwargs: Any) -> str | None:
        journey = Journey(
            tenant=TENANT, scenario_key="s", scenario_version=1, customer_id=customer_id,
            entry_key=f"s:{customer_id}", entry_kind="cart.abandoned",
            status=JourneyStatus.RUNNING, started_at=NOW, updated_at=NOW,
            context={"trigger": {"categories": ["dryers"]}})
        offer = choose_offer(Lookups(session, now=NOW), choice=choice, journey=journey,
                             facts=facts[customer_id], now=NOW, **kwargs)
        return offer.key if offer is not None else None

    by_key, by_category = OfferChoice(key="dryers-buyers"), OfferChoice(trigger_category=True)
    assert chosen(ana, by_key, segments=segments) == "dryers-buyers"
    assert chosen(ben, by_key, segments=segments) is None
    # The most generous the customer may get: the segment's for a member only.
    assert chosen(ana, by_category, segments=segments) == "dryers-buyers"
    assert chosen(ben, by_category, segments=segments) == "dryers-all"
    # Without the tenant's segments, nobody gets a restricted offer.
    assert chosen(ana, by_key) is None


# --- counting members ------------------------------------------------------------------------


def test_members_are_counted_in_batches_for_several_segments_in_one_pass(
    session: Session,
) -> None:
    tags = ["vip", "", "vip", "washer-buyer", "vip", ""]
    ids = [customer(session, f"c{index}", *([tag] if tag else []), push=index % 2 == 0)
           for index, tag in enumerate(tags)]
    segment(session, "vips", {"tag": "vip"})
    segment(session, "reachable-vips", {"all": [{"segment": "vips"}, {"consent": "push"}]})
    segments = build_book(list_segments(session, tenant=TENANT))
    conditions = {key: CONDITION.validate_python({"segment": key}) for key in segments}
    conditions["inline"] = CONDITION.validate_python({"all": [{"tag": "vip"},
                                                              {"consent": "push"}]})
    counts = count_members(session, tenant=TENANT, conditions=conditions, segments=segments,
                           now=NOW, batch=4)
    assert (dict(counts.members), counts.customers) == (
        {"vips": 3, "reachable-vips": 3, "inline": 3}, 6)
    assert members_among(session, customer_ids=ids[:3], condition=conditions["vips"],
                         segments=segments, now=NOW, batch=2) == {ids[0], ids[2]}
    facts = load_facts(session, customer_ids=ids, now=NOW)
    assert {cid for cid in ids if evaluate(conditions["reachable-vips"], facts[cid], {}, NOW,
                                           segments)} == {ids[0], ids[2], ids[4]}


def test_each_segment_is_counted_once_a_day(session: Session) -> None:
    customer(session, "ana", "vip")
    customer(session, "ben")
    segment(session, "vips", {"tag": "vip"})
    segment(session, "everyone", {"not": {"tag": "nobody-has-this"}})
    segment(session, "old", {"tag": "old"})
    row = get_segment(session, tenant=TENANT, key="old")
    assert row is not None
    archive_segment(session, segment=row, now=NOW)
    session.commit()
    assert record_daily_counts(session, tenant=TENANT, now=NOW) == 2
    session.commit()
    assert record_daily_counts(session, tenant=TENANT, now=NOW + timedelta(hours=3)) == 0
    customer(session, "cid", "vip")
    segment(session, "vips", {"any": [{"tag": "vip"}, {"tag": "vip2"}]})
    assert record_daily_counts(session, tenant=TENANT, now=NOW + timedelta(days=1)) == 2
    session.commit()
    history = count_history(session, tenant=TENANT, key="vips", since=NOW.date())
    assert [(one.day.isoformat(), one.version, one.members, one.customers)
            for one in history] == [("2026-05-10", 1, 1, 2), ("2026-05-11", 2, 2, 3)]
    assert count_history(session, tenant=TENANT, key="old", since=NOW.date()) == []


def test_a_second_worker_skips_a_tenant_being_counted(engine: Engine) -> None:
    """PostgreSQL: the tenant's counting lock is held by the first transaction; the second
    counts nothing, and another tenant is not held up. (SQLite has one writer.)"""
    with session_scope(engine) as first, session_scope(engine) as second:
        assert claim_counting(first, tenant=TENANT)
        held = engine.dialect.name == "postgresql"
        assert claim_counting(second, tenant=TENANT) is not held
        assert claim_counting(second, tenant="other-shop")
        first.rollback()
        assert claim_counting(second, tenant=TENANT)


def test_the_worker_counts_every_tenants_segments_on_its_calendar_round(
    engine: Engine, session: Session
) -> None:
    customer(session, "ana", "vip")
    segment(session, "vips", {"tag": "vip"})
    worker = ScenarioWorker(engine=engine, config=CONFIG, now=lambda: NOW)
    worker.run_once(timers=False)
    assert worker.record_segment_counts(NOW) == 0  # counted once today already
    history = count_history(session, tenant=TENANT, key="vips", since=NOW.date())
    assert [(one.members, one.customers) for one in history] == [(1, 1)]


# --- what names a segment --------------------------------------------------------------------


def test_referrers_are_the_active_scenarios_offers_and_segments_naming_it(
    session: Session,
) -> None:
    segment(session, "vips", {"tag": "vip"})
    segment(session, "reachable-vips", {"all": [{"segment": "vips"}, {"consent": "push"}]})
    scenario(session, {"key": "by-branch", "steps": [
        {"id": "b", "type": "branch", "if": {"not": {"segment": "vips"}}}]})
    scenario(session, {"key": "by-entry", "conditions": {"segment": "vips"}})
    scenario(session, {"key": "switched-off", "conditions": {"segment": "vips"}})
    scenario(session, {"key": "unrelated", "conditions": {"segment": "reachable-vips"}})
    off = get_scenario(session, tenant=TENANT, key="switched-off")
    assert off is not None
    deactivate_scenario(session, scenario=off, now=NOW)
    save_offer(session, tenant=TENANT, key="vip-dryers", segment="vips")
    save_offer(session, tenant=TENANT, key="vip-old", segment="vips", active=False)
    session.commit()
    assert referrers(session, tenant=TENANT, key="vips") == [
        "scenario 'by-branch'", "scenario 'by-entry'", "offer 'vip-dryers'",
        "segment 'reachable-vips'"]
    assert referrers(session, tenant=TENANT, key="reachable-vips") == ["scenario 'unrelated'"]
