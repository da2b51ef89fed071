"""Conditions evaluated against customer facts: every leaf, the combinators, and the
comparisons a profile field or trigger attribute goes through."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from cloud.scenarios.conditions import (
    ALL_FACTS,
    AttributeFilter,
    Condition,
    CustomerFacts,
    FactKind,
    Purchase,
    SentMessage,
    compare,
    evaluate,
    facts_read,
    in_segment,
    matches_attributes,
    segments_named,
    segments_reached,
)
from cloud.scenarios.segments import book_of

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)


def message(**changes: Any) -> SentMessage:
    values: dict[str, Any] = {
        "message_id": 1, "scenario": "store-cross-sell", "step": "send", "channel": "push",
        "created_at": NOW - timedelta(days=2), "opened_at": None, "clicked_at": None,
        "converted_at": None, "product_category": "dryers", "product_sku": "D1",
        "offer_id": 7,
    }
    values.update(changes)
    return SentMessage(**values)


FACTS = CustomerFacts(
    customer_id=1, tenant="t",
    profile={"first_name": "Ana", "locale": "es", "email": "", "birth_date": date(1990, 2, 1),
             "attributes": {"tier": "gold", "visits": 12}},
    tags=frozenset({"newsletter", "vip"}),
    consents=frozenset({"email"}),
    purchases=(Purchase("W1", "washers", NOW - timedelta(days=10)),
               Purchase("F1", "fridges", NOW - timedelta(days=400))),
    spend={"EUR": Decimal("950.00"), "USD": Decimal("120.00")},
    messages=(
        message(message_id=3, created_at=NOW - timedelta(hours=1), channel="email",
                opened_at=NOW - timedelta(minutes=30)),
        message(message_id=2, created_at=NOW - timedelta(days=5), scenario="welcome",
                clicked_at=NOW - timedelta(days=4), converted_at=NOW - timedelta(days=4)),
    ),
    last={"order": NOW - timedelta(days=10), "signup": NOW - timedelta(days=900),
          "click": NOW - timedelta(days=4)},
)


def check(document: Any, trigger: dict[str, Any] | None = None) -> bool:
    return evaluate(CONDITION.validate_python(document), FACTS, trigger or {}, NOW)


LEAVES: list[tuple[dict[str, Any], bool]] = [
    ({"tag": "vip"}, True),
    ({"tag": "lapsed"}, False),
    ({"profile": "first_name", "value": "Ana"}, True),
    ({"profile": "attributes.tier", "op": "in", "value": ["gold", "silver"]}, True),
    ({"profile": "attributes.visits", "op": "gte", "value": 12}, True),
    ({"profile": "attributes.visits", "op": "gt", "value": "12"}, False),
    ({"profile": "attributes.missing", "op": "exists"}, False),
    ({"profile": "email", "op": "exists"}, False),
    ({"profile": "email", "op": "exists", "value": False}, True),
    ({"profile": "first_name.sub", "value": None}, True),
    ({"profile": "birth_date", "op": "lt", "value": "2000-01-01"}, True),
    ({"consent": "email"}, True),
    ({"consent": "sms"}, False),
    ({"purchased": {"category": "washers"}}, True),
    ({"purchased": {"category": "washers", "within": "P7D"}}, False),
    ({"purchased": {"sku": "F1"}}, True),
    ({"purchased": {"sku": "F1", "within": "P30D"}}, False),
    ({"purchased": {"category": "dryers"}}, False),
    ({"purchased": {}}, True),
    ({"message": {"scenario": "store-cross-sell", "opened": True, "converted": False}}, True),
    ({"message": {"scenario": "welcome", "opened": True}}, True),  # a click counts as open
    ({"message": {"scenario": "welcome", "converted": True, "within": "P1D"}}, False),
    ({"message": {"channel": "sms"}}, False),
    ({"message": {"step": "send", "clicked": False, "channel": "email"}}, True),
    ({"spend": {"value": "950"}}, True),
    ({"spend": {"op": "gt", "value": "950"}}, False),
    ({"spend": {"op": "lt", "value": "1000"}}, True),
    # Without a currency, any currency's spend may hold; with one, that currency's.
    ({"spend": {"op": "lt", "value": "200"}}, True),
    ({"spend": {"op": "lt", "value": "200", "currency": "EUR"}}, False),
    ({"spend": {"value": "950", "currency": "USD"}}, False),
    ({"spend": {"value": "100", "currency": "USD"}}, True),
    ({"spend": {"op": "lt", "value": "1", "currency": "GBP"}}, True),  # spent none in it
    ({"since": {"event": "order", "more_than": "P7D"}}, True),
    ({"since": {"event": "order", "less_than": "P7D"}}, False),
    ({"since": {"event": "visit", "more_than": "P7D"}}, True),  # never visited
    ({"since": {"event": "visit", "less_than": "P7D"}}, False),
    ({"since": {"event": "click", "more_than": "P1D", "less_than": "P5D"}}, True),
    ({"trigger": {"attribute": "store", "value": "s1"}}, True),
    ({"trigger": {"attribute": "store", "op": "ne", "value": "s1"}}, False),
]


@pytest.mark.parametrize(("document", "expected"), LEAVES)
def test_each_leaf(document: dict[str, Any], expected: bool) -> None:
    assert check(document, {"store": "s1"}) is expected


def test_all_any_not() -> None:
    assert check({"all": [{"tag": "vip"}, {"consent": "email"}]})
    assert not check({"all": [{"tag": "vip"}, {"consent": "sms"}]})
    assert check({"any": [{"tag": "nope"}, {"consent": "email"}]})
    assert not check({"any": [{"tag": "nope"}, {"consent": "sms"}]})
    assert check({"not": {"tag": "nope"}})
    assert not check({"not": {"not": {"tag": "nope"}}})
    assert check({"all": [{"tag": "newsletter"}, {"purchased": {"category": "washers"}},
                          {"not": {"purchased": {"category": "dryers"}}},
                          {"any": [{"spend": {"value": "10000"}}, {"tag": "vip"}]}]})


@pytest.mark.parametrize("document", [
    {"all": []}, {"tag": "Upper Case"}, {"since": {"event": "order"}},
    {"spend": {"value": "-1"}}, {"spend": {"value": "1", "currency": "euro"}},
    {"tag": "x", "extra": 1}, {"unknown": 1},
    {"purchased": {"within": "P2000D"}},
])
def test_malformed_conditions_are_refused(document: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CONDITION.validate_python(document)


@pytest.mark.parametrize(("actual", "op", "expected", "result"), [
    (1, "eq", 1.0, True),
    (1, "eq", "1", False),  # a number is not its text
    (True, "eq", 1, False),  # nor is a boolean a number
    (True, "eq", True, True),
    (None, "eq", None, True),
    (None, "ne", "x", True),
    ("a", "in", ["a", "b"], True),
    ("a", "in", "abc", False),  # `in` needs a list
    (2, "in", [1.0, 2.0], True),
    (None, "gt", 1, False),
    ("abc", "gt", 1, False),  # text against a number: not comparable, not an error
    ("10", "gt", 9, True),  # numeric text compares as a number
    ("b", "gt", "a", True),
    (True, "gt", False, False),  # booleans are not ordered
    (Decimal("1.10"), "lte", 1.1, True),
    (date(2026, 1, 2), "gt", "2026-01-01", True),
    (datetime(2026, 1, 1, tzinfo=UTC), "lt", "2027-01-01", True),
    ([1], "gt", 0, False),
    ("", "exists", None, False),
    (0, "exists", True, True),
    ("x", "exists", False, False),
    (1e400, "gt", 1, True),
    (float("nan"), "gt", 1, False),
])
def test_compare_edge_cases(actual: Any, op: str, expected: Any, result: bool) -> None:
    assert compare(actual, op, expected) is result


def test_attribute_filters_all_must_hold() -> None:
    filters = [AttributeFilter(attribute="store", value="s1"),
               AttributeFilter(attribute="dwell_s", op="gte", value=300)]
    assert matches_attributes(filters, {"store": "s1", "dwell_s": 301})
    assert not matches_attributes(filters, {"store": "s1", "dwell_s": 10})
    assert not matches_attributes(filters, {"store": "s1"})
    assert matches_attributes([], {})


#: Every part of the facts filled in, a visit included.
FULL = replace(FACTS, last={**FACTS.last, "visit": NOW - timedelta(days=3)})
#: What each kind holds when loaded; absent, the part is empty (as `load_facts` leaves it).
_PART_FIELDS: dict[FactKind, tuple[str, ...]] = {
    FactKind.TAGS: ("tags",), FactKind.PURCHASES: ("purchases", "order"),
    FactKind.SPEND: ("spend",), FactKind.MESSAGES: ("messages", "click"),
    FactKind.VISITS: ("visit",),
}


def loaded_only(facts: CustomerFacts, kinds: frozenset[FactKind]) -> CustomerFacts:
    missing = {name for kind in ALL_FACTS - kinds for name in _PART_FIELDS[kind]}
    return replace(
        facts,
        tags=frozenset() if "tags" in missing else facts.tags,
        purchases=() if "purchases" in missing else facts.purchases,
        spend={} if "spend" in missing else facts.spend,
        messages=() if "messages" in missing else facts.messages,
        last={event: at for event, at in facts.last.items() if event not in missing},
    )


@pytest.mark.parametrize("document", [document for document, _ in LEAVES] + [
    {"not": document} for document, _ in LEAVES
] + [{"any": [{"tag": "lapsed"}, {"since": {"event": "visit", "less_than": "P7D"}}]}])
def test_facts_read_names_every_part_a_condition_reads(document: dict[str, Any]) -> None:
    """Evaluated on facts holding only what `facts_read` names, every condition (and its
    negation) answers as on complete facts: the engine loads no more than that."""
    condition = CONDITION.validate_python(document)
    trigger = {"store": "s1"}
    partial = loaded_only(FULL, facts_read(condition))
    assert evaluate(condition, partial, trigger, NOW) == evaluate(condition, FULL, trigger, NOW)


@pytest.mark.parametrize(("document", "kinds"), [
    ({"tag": "vip"}, {FactKind.TAGS}),
    ({"purchased": {}}, {FactKind.PURCHASES}),
    ({"message": {"opened": True}}, {FactKind.MESSAGES}),
    ({"spend": {"value": "1"}}, {FactKind.SPEND}),
    ({"since": {"event": "order", "less_than": "P1D"}}, {FactKind.PURCHASES}),
    ({"since": {"event": "visit", "less_than": "P1D"}}, {FactKind.VISITS}),
    ({"since": {"event": "click", "less_than": "P1D"}}, {FactKind.MESSAGES}),
    ({"since": {"event": "signup", "less_than": "P1D"}}, set()),
    ({"profile": "locale", "value": "es"}, set()),
    ({"consent": "email"}, set()),
    ({"trigger": {"attribute": "store", "value": "s1"}}, set()),
    ({"all": [{"tag": "vip"}, {"not": {"any": [{"spend": {"value": "1"}}, {"consent": "sms"}]}}]},
     {FactKind.TAGS, FactKind.SPEND}),
])
def test_facts_read_of_each_kind_of_condition(
    document: dict[str, Any], kinds: set[FactKind]
) -> None:
    assert facts_read(CONDITION.validate_python(document)) == kinds


# --- segments --------------------------------------------------------------------------------

#: Washer buyers (purchases) reachable by email, and the VIPs (tags) among them.
BOOK = book_of({
    "washer-buyers": (3, CONDITION.validate_python(
        {"all": [{"purchased": {"category": "washers"}}, {"consent": "email"}]})),
    "vip-washer-buyers": (1, CONDITION.validate_python(
        {"all": [{"segment": "washer-buyers"}, {"tag": "vip"}]})),
    "dryer-buyers": (2, CONDITION.validate_python({"purchased": {"category": "dryers"}})),
})


def in_book(document: Any) -> bool:
    return evaluate(CONDITION.validate_python(document), FACTS, {"store": "s1"}, NOW, BOOK)


def test_a_segment_condition_is_its_definition() -> None:
    assert in_book({"segment": "washer-buyers"})
    assert in_book({"segment": "vip-washer-buyers"})
    assert not in_book({"segment": "dryer-buyers"})
    assert in_book({"not": {"segment": "dryer-buyers"}})
    assert in_segment("vip-washer-buyers", FACTS, NOW, BOOK)


def test_a_segment_not_in_the_book_matches_nobody() -> None:
    assert not in_book({"segment": "no-such-segment"})
    assert not check({"segment": "washer-buyers"})  # evaluated without the tenant's segments
    assert in_book({"not": {"segment": "no-such-segment"}})


def test_a_segment_sees_no_trigger() -> None:
    """A segment describes the customer: a trigger condition in one (refused at save)
    would not see the trigger at hand."""
    book = book_of({"in-s1": (1, CONDITION.validate_python(
        {"trigger": {"attribute": "store", "value": "s1"}}))})
    condition = CONDITION.validate_python({"segment": "in-s1"})
    assert not evaluate(condition, FACTS, {"store": "s1"}, NOW, book)


def test_a_cycle_that_slipped_in_matches_nobody_and_ends() -> None:
    """Two concurrent saves could close a cycle the checks refuse one at a time:
    evaluation stops at `MAX_SEGMENT_DEPTH` instead of recursing for ever."""
    book = book_of({
        "a": (1, CONDITION.validate_python({"any": [{"segment": "b"}, {"tag": "vip"}]})),
        "b": (1, CONDITION.validate_python({"segment": "a"})),
    })
    assert evaluate(CONDITION.validate_python({"segment": "a"}), FACTS, {}, NOW, book)
    assert not evaluate(CONDITION.validate_python({"segment": "b"}),
                        replace(FACTS, tags=frozenset()), {}, NOW, book)


def test_a_segment_reads_the_facts_of_its_definition_and_of_the_segments_it_names() -> None:
    assert facts_read(CONDITION.validate_python({"segment": "vip-washer-buyers"}), BOOK) == {
        FactKind.PURCHASES, FactKind.TAGS}
    assert facts_read(CONDITION.validate_python({"segment": "dryer-buyers"}), BOOK) == {
        FactKind.PURCHASES}
    assert facts_read(CONDITION.validate_python({"segment": "unknown"}), BOOK) == set()
    condition = CONDITION.validate_python({"not": {"segment": "vip-washer-buyers"}})
    partial = loaded_only(FULL, facts_read(condition, BOOK))
    assert (evaluate(condition, partial, {}, NOW, BOOK)
            == evaluate(condition, FULL, {}, NOW, BOOK))


def test_the_segments_a_condition_names_and_reaches() -> None:
    condition = CONDITION.validate_python(
        {"any": [{"segment": "vip-washer-buyers"}, {"not": {"segment": "dryer-buyers"}},
                 {"segment": "gone"}]})
    assert segments_named(condition) == {"vip-washer-buyers", "dryer-buyers", "gone"}
    assert segments_reached(condition, BOOK) == {
        "dryer-buyers": 2, "vip-washer-buyers": 1, "washer-buyers": 3}
    assert segments_reached(None, BOOK) == {}
    assert segments_reached(CONDITION.validate_python({"tag": "vip"}), BOOK) == {}


@pytest.mark.parametrize("document", [{"segment": "Upper"}, {"segment": ""},
                                      {"segment": "a", "tag": "b"}, {"segment": 3}])
def test_malformed_segment_conditions_are_refused(document: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CONDITION.validate_python(document)
