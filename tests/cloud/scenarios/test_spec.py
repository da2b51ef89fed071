"""Scenario documents: what is accepted, what is refused at save time, and that no input
whatsoever escapes as anything but a validation error."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cloud.scenarios.conditions import FactKind
from cloud.scenarios.spec import (
    Entry,
    OfferChoice,
    ScenarioSpec,
    SendStep,
    WaitStep,
    save_problems,
)
from shared.errors import describe_validation_error, spread_located


def scenario(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "key": "cart-abandoned", "name": "Cart reminder",
        "entry": {"event": "cart.abandoned"},
        "exit_on": ["order.created"],
        "steps": [
            {"id": "wait", "type": "wait", "for": "PT15M"},
            {"id": "coupon", "type": "send", "channels": ["sms", "push"], "template": "cart",
             "offer": {"trigger_category": True, "min_discount": 15},
             "coupon": {"valid_for": "PT24H"}},
        ],
    }
    document.update(changes)
    return document


def test_a_valid_scenario_parses_with_its_durations_and_steps() -> None:
    spec = ScenarioSpec.model_validate(scenario())
    wait, send = spec.steps
    assert isinstance(wait, WaitStep)
    assert wait.wait_for == timedelta(minutes=15)
    assert isinstance(send, SendStep)
    assert send.coupon is not None
    assert send.coupon.valid_for == timedelta(hours=24)
    assert spec.step_index("coupon") == 1


def test_every_step_type_and_jump_is_accepted() -> None:
    spec = ScenarioSpec.model_validate(scenario(
        variants=[{"key": "a"}, {"key": "b", "weight": 3}],
        steps=[
            {"id": "t", "type": "tag", "add": ["vip"], "next": "w"},
            {"id": "w", "type": "wait_for", "event": "order.created", "timeout": "P1D",
             "yes": "l", "no": "b"},
            {"id": "b", "type": "branch", "if": {"tag": "vip"}, "then": "s", "else": "end"},
            {"id": "s", "type": "send", "channels": ["email"], "template": "t",
             "variants": {"b": {"template": "t2"}}, "next": "end"},
            {"id": "l", "type": "loyalty_credit", "amount": "5.00", "currency": "EUR"},
            {"id": "r", "type": "remove_from_list", "list": "newsletter"},
            {"id": "h", "type": "webhook", "url": "https://shop.example/hook"},
            {"id": "c", "type": "issue_coupon", "offer": {"key": "x"},
             "coupon": {"valid_for": 3600}},
        ],
    ))
    assert ("t2", "email") in set(spec.templates())


@pytest.mark.parametrize(("changes", "message"), [
    ({"steps": [{"id": "a", "type": "wait", "for": "PT1M", "next": "nowhere"}]},
     "unknown step"),
    ({"steps": [{"id": "a", "type": "wait", "for": "PT1M"},
                {"id": "a", "type": "wait", "for": "PT2M"}]}, "unique"),
    ({"steps": [{"id": "end", "type": "wait", "for": "PT1M"}]}, "reserved"),
    ({"steps": [{"id": "w", "type": "wait_for", "event": "order.created", "timeout": "P1D",
                 "no": "gone"}]}, "unknown step"),
    ({"steps": [{"id": "b", "type": "branch", "if": {"tag": "x"}, "else": "gone"}]},
     "unknown step"),
    ({"steps": []}, "at least 1"),
    ({"steps": [{"id": "a", "type": "wait", "for": "P500D"}]}, "less than or equal"),
    ({"steps": [{"id": "a", "type": "wait", "for": "PT0S"}]}, "greater than"),
    ({"steps": [{"id": "a", "type": "wait_for", "event": "order.created"}]}, "timeout"),
    ({"steps": [{"id": "a", "type": "send", "channels": [], "template": "t"}]}, "at least 1"),
    ({"steps": [{"id": "a", "type": "send", "channels": ["sms", "sms"], "template": "t"}]},
     "twice"),
    ({"steps": [{"id": "a", "type": "send", "channels": ["sms"], "template": "t",
                 "coupon": {"valid_for": "P1D"}}]}, "needs an offer"),
    ({"steps": [{"id": "a", "type": "send", "channels": ["sms"], "template": "t",
                 "variants": {"z": {"template": "u"}}}]}, "unknown variant 'z'"),
    ({"steps": [{"id": "a", "type": "send", "channels": ["email"], "template": "t",
                 "transactional": True, "offer": {"key": "dryer20"}}]}, "carries no offer"),
    ({"variants": [{"key": "b"}],
      "steps": [{"id": "a", "type": "send", "channels": ["email"], "template": "t",
                 "transactional": True, "variants": {"b": {"offer": {"key": "dryer20"}}}}]},
     "carries no offer"),
    ({"variants": [{"key": "a"}, {"key": "a"}]}, "variant keys"),
    ({"holdout_percent": 95}, "less than or equal"),
    ({"surprise": 1}, "Extra inputs"),
])
def test_inconsistent_scenarios_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScenarioSpec.model_validate(scenario(**changes))


def problems_of(document: dict[str, Any]) -> list[tuple[list[str | int], str]]:
    """Each problem of an invalid document where an editor shows it: its place, its text
    (its shape's problems, else those only a save checks)."""
    try:
        spec = ScenarioSpec.model_validate(document)
    except ValidationError as raised:
        return [(problem["loc"], problem["msg"])
                for item in raised.errors() for problem in spread_located(item)]
    found = save_problems(spec)
    assert found, "no problem found"
    return [(list(loc), message) for loc, message in found]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"steps": [{"id": "w", "type": "wait", "for": "PT1M", "next": "s"},
                {"id": "s", "type": "tag", "add": ["x"], "next": "nowhere"}]},
     [(["steps", 1, "tag", "next"], "step 's' jumps to unknown step 'nowhere'")]),
    ({"steps": [{"id": "w", "type": "wait_for", "event": "order.created", "timeout": "P1D",
                 "yes": "gone"},
                {"id": "b", "type": "branch", "if": {"tag": "vip"}, "else": "lost"}]},
     [(["steps", 0, "wait_for", "yes"], "step 'w' jumps to unknown step 'gone'"),
      (["steps", 1, "branch", "else"], "step 'b' jumps to unknown step 'lost'")]),
    ({"steps": [{"id": "a", "type": "wait", "for": "PT1M"},
                {"id": "a", "type": "tag", "add": ["x"]},
                {"id": "end", "type": "tag", "add": ["y"]}]},
     [(["steps", 1, "tag", "id"], "step id 'a' is used twice: step ids must be unique"),
      (["steps", 2, "tag", "id"], "'end' is reserved for ending the journey")]),
    ({"variants": [{"key": "a"}, {"key": "a"}]},
     [(["variants", 1, "key"], "variant 'a' is listed twice: variant keys must be unique")]),
    ({"steps": [{"id": "a", "type": "wait", "for": "PT1M"},
                {"id": "s", "type": "send", "channels": ["sms"], "template": "t",
                 "variants": {"z": {"template": "u"}}}]},
     [(["steps", 1, "send", "variants", "z"], "step 's' overrides unknown variant 'z'")]),
    ({"steps": [{"id": "a", "type": "send", "channels": ["sms", "sms"], "template": "t",
                 "coupon": {"valid_for": "P1D"}}]},
     [(["steps", 0, "send", "coupon"], "step 'a': a coupon needs an offer"),
      (["steps", 0, "send", "channels"], "step 'a': a channel is listed twice")]),
    ({"entry": {"event": "inactivity", "spend_crosses": "10"}},
     [(["entry", "inactive_days"], "an entry on 'inactivity' needs inactive_days"),
      (["entry", "spend_crosses"], "spend_crosses applies only to entries on 'spend.changed'")]),
    ({"steps": [{"id": "b", "type": "branch", "if": {"tag": "Not A Tag"}}]},
     [(["steps", 0, "branch", "if", "tag", "tag"],
       "String should match pattern '^[a-z0-9][a-z0-9_.:-]{0,63}$'")]),
    ({"steps": [{"id": "b", "type": "branch",
                 "if": {"all": [{"tag": "x"}, {"tag": "y", "spend": {"value": 1}}]}}]},
     [(["steps", 0, "branch", "if", "all", "all", 1],
       "a condition names exactly one of: all, any, not, tag, profile, consent, purchased, "
       "message, spend, since, trigger, segment")]),
    # Attributes a trigger does not carry would never match: refused, with the nearest.
    ({"entry": {"event": "presence.enter", "where": [{"attribute": "zones", "value": "a"}]}},
     [(["entry", "where", 0, "attribute"], "presence.enter triggers carry no attribute "
       "'zones' (did you mean 'zone'?); they carry: store, zone, gateway, dwell_s")]),
    ({"steps": [{"id": "w", "type": "wait_for", "event": "app.opened", "timeout": "P1D",
                 "where": [{"attribute": "store"}]}]},
     [(["steps", 0, "wait_for", "where", 0, "attribute"],
       "app.opened triggers carry no attributes to test")]),
    ({"conditions": {"not": {"trigger": {"attribute": "categorys", "op": "in", "value": "x"}}}},
     [(["conditions", "not", "not", "trigger", "trigger", "attribute"],
       "cart.abandoned triggers carry no attribute 'categorys' (did you mean 'categories'?); "
       "they carry: categories, skus, cart_id")]),
    # A branch sees the entry's trigger and the ones the scenario waits for.
    ({"steps": [{"id": "w", "type": "wait_for", "event": "order.created", "timeout": "P1D"},
                {"id": "b", "type": "branch", "if": {"all": [
                    {"trigger": {"attribute": "total", "op": "gt", "value": 100}},
                    {"trigger": {"attribute": "totl", "op": "gt", "value": 100}}]}}]},
     [(["steps", 1, "branch", "if", "all", "all", 1, "trigger", "trigger", "attribute"],
       "no trigger this step can see carries attribute 'totl' (did you mean 'total'?)")]),
    # Loops are refused, at the jump that closes them, whatever kind of step it is.
    ({"steps": [{"id": "s", "type": "send", "channels": ["push"], "template": "t"},
                {"id": "w", "type": "wait_for", "event": "order.created", "timeout": "PT1H",
                 "no": "s"}]},
     [(["steps", 1, "wait_for", "no"], "steps 's' -> 'w' -> 's' form a loop: a journey "
       "could go round it for ever; loops are not allowed (list a repeated reminder's "
       "steps again)")]),
    ({"steps": [{"id": "a", "type": "branch", "if": {"tag": "x"}, "else": "end"},
                {"id": "b", "type": "branch", "if": {"tag": "y"}, "then": "a"}]},
     [(["steps", 1, "branch", "then"], "steps 'a' -> 'b' -> 'a' form a loop: a journey "
       "could go round it for ever; loops are not allowed (list a repeated reminder's "
       "steps again)")]),
    ({"steps": [{"id": "a", "type": "wait", "for": "PT1M", "next": "a"}]},
     [(["steps", 0, "wait", "next"], "steps 'a' -> 'a' form a loop: a journey could go "
       "round it for ever; loops are not allowed (list a repeated reminder's steps again)")]),
])
def test_problems_are_placed_at_the_step_and_field_they_concern(
    changes: dict[str, Any], expected: list[tuple[list[str | int], str]]
) -> None:
    assert problems_of(scenario(**changes)) == expected


def test_a_summary_of_the_problems_names_each_place() -> None:
    """Where a scenario is read outside the API (a log, a command), problems read the same."""
    with pytest.raises(ValidationError) as raised:
        ScenarioSpec.model_validate(scenario(steps=[
            {"id": "a", "type": "wait", "for": "PT1M", "next": "x"},
            {"id": "a", "type": "tag", "add": ["y"]}]))
    assert describe_validation_error(raised.value) == (
        "steps.1.tag.id: step id 'a' is used twice: step ids must be unique; "
        "steps.0.wait.next: step 'a' jumps to unknown step 'x'")


@pytest.mark.parametrize(("entry", "ok"), [
    ({"event": "inactivity", "inactive_days": 30}, True),
    ({"event": "inactivity"}, False),
    ({"event": "date", "date_field": "birth_date"}, True),
    ({"event": "date"}, False),
    ({"event": "spend.changed", "spend_crosses": "500.00"}, True),
    ({"event": "spend.changed"}, False),
    ({"event": "order.created", "inactive_days": 30}, False),
    ({"event": "order.created", "date_field": "birth_date"}, False),
    ({"event": "cart.abandoned", "spend_crosses": "1"}, False),
    ({"event": "presence.enter", "where": [{"attribute": "store", "value": "s1"}],
      "reentry": "always", "cooldown": "PT4H"}, True),
    ({"event": "presence.enter", "reentry": "sometimes"}, False),
    ({"event": "no.such.kind"}, False),
])
def test_entry_parameters_belong_to_their_event(entry: dict[str, Any], ok: bool) -> None:
    if ok:
        Entry.model_validate(entry)
    else:
        with pytest.raises(ValidationError):
            Entry.model_validate(entry)


@pytest.mark.parametrize(("choice", "ok"), [
    ({"key": "washer-10"}, True),
    ({"cross_sell": True}, True),
    ({"trigger_category": True, "min_discount": 10}, True),
    ({"message_category": "store-cross-sell"}, True),
    ({}, False),
    ({"min_discount": 10}, False),
    ({"key": "a", "cross_sell": True}, False),
    ({"trigger_category": True, "message_category": "x"}, False),
    ({"cross_sell": True, "trigger_category": True}, False),
])
def test_an_offer_is_chosen_exactly_one_way(choice: dict[str, Any], ok: bool) -> None:
    if ok:
        OfferChoice.model_validate(choice)
    else:
        with pytest.raises(ValidationError, match="one way"):
            OfferChoice.model_validate(choice)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["wait", "send", "branch", "wait_for", "PT1M", "end", "order.created",
                       "email", "tag", "not", "all"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(["key", "name", "entry", "event", "steps", "id", "type", "for",
                         "next", "if", "then", "else", "channels", "template", "offer",
                         "coupon", "variants", "all", "any", "not", "tag", "timeout",
                         "where", "attribute", "op", "value", "yes", "no"])
        | st.text(max_size=6),
        inner, max_size=6,
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(document=JSON)
def test_arbitrary_json_raises_nothing_but_a_validation_error(document: Any) -> None:
    with contextlib.suppress(ValidationError):
        ScenarioSpec.model_validate(document)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(JSON, min_size=1, max_size=3), entry=JSON)
def test_arbitrary_steps_in_a_scenario_raise_only_validation_errors(
    steps: list[Any], entry: Any
) -> None:
    with contextlib.suppress(ValidationError):
        ScenarioSpec.model_validate(scenario(steps=steps, entry=entry))


def test_facts_read_covers_conditions_branches_and_offers() -> None:
    """What the engine loads for a tenant's scenarios: entry conditions and branches by
    what they test; any offer reads purchases (cross-sell) and messages (escalation)."""
    plain = ScenarioSpec.model_validate(scenario(steps=[
        {"id": "hello", "type": "send", "channels": ["push"], "template": "hello"},
    ]))
    assert plain.facts_read() == frozenset()
    assert ScenarioSpec.model_validate(scenario()).facts_read() == {
        FactKind.PURCHASES, FactKind.MESSAGES,
    }
    branching = ScenarioSpec.model_validate(scenario(
        conditions={"tag": "vip"},
        steps=[
            {"id": "check", "type": "branch", "if": {"spend": {"value": "100"}},
             "then": "hello"},
            {"id": "hello", "type": "send", "channels": ["push"], "template": "hello"},
        ],
    ))
    assert branching.facts_read() == {FactKind.TAGS, FactKind.SPEND}


def test_what_a_send_can_fill_follows_its_offer_coupon_entry_and_earlier_steps() -> None:
    spec = ScenarioSpec.model_validate(scenario(
        entry={"event": "presence.enter"},
        steps=[{"id": "plain", "type": "send", "channels": ["push"], "template": "t"},
               {"id": "credit", "type": "loyalty_credit", "amount": "5", "currency": "EUR"},
               {"id": "full", "type": "send", "channels": ["push"], "template": "t",
                "offer": {"key": "o"}, "coupon": {"valid_for": "P1D"}}]))
    _, _, full = spec.steps
    assert set(spec.unsupplied(0, None)) == {"product", "offer", "coupon", "loyalty"}
    assert isinstance(full, SendStep)
    assert spec.unsupplied(2, full.offer) == {}
    # Reached one way without the credit: no loyalty figures to show.
    around = ScenarioSpec.model_validate(scenario(steps=[
        {"id": "b", "type": "branch", "if": {"tag": "vip"}, "then": "send"},
        {"id": "credit", "type": "loyalty_credit", "amount": "5", "currency": "EUR"},
        {"id": "send", "type": "send", "channels": ["push"], "template": "t"}]))
    assert "loyalty" in around.unsupplied(2, None)
    assert "store" in around.unsupplied(2, None)  # a cart, not a visit, started it


def test_every_value_in_a_definition_is_bounded() -> None:
    """A megabyte of compare value, conditions nested past the total: refused when
    saved."""
    big = {"attribute": "categories", "op": "in", "value": ["x" * 100] * 100}
    assert problems_of(scenario(entry={"event": "cart.abandoned", "where": [big]})) == [
        (["entry", "where", 0, "value"], "is 10400 characters as JSON; at most 4096")]
    [(where, message)] = problems_of(scenario(conditions={"not": {
        "trigger": {"attribute": "skus", "value": "y" * 5000}}}))
    assert where == ["conditions", "not", "not", "trigger", "trigger", "value"]
    assert message.endswith("characters as JSON; at most 4096")
    nested = {"all": [{"any": [{"tag": f"t{i}-{j}"} for j in range(19)]} for i in range(11)]}
    assert problems_of(scenario(conditions=nested)) == [
        ([], "221 conditions in all; a scenario may hold 200")]
    # A send's overrides each name one of the (at most 10) variants.
    variants = {f"v{i}": {"template": "t"} for i in range(11)}
    assert problems_of(scenario(variants=[{"key": f"v{i}"} for i in range(10)], steps=[
        {"id": "s", "type": "send", "channels": ["sms"], "template": "t",
         "variants": variants}])) == [
        (["steps", 0, "send", "variants", "v10"], "step 's' overrides unknown variant 'v10'")]


def test_a_definition_saved_by_an_earlier_release_still_loads() -> None:
    """What only a save checks (here a loop) does not stop a stored scenario from loading
    in the worker or the API: it runs as before until it is next saved."""
    spec = ScenarioSpec.model_validate(scenario(steps=[
        {"id": "a", "type": "wait", "for": "PT1H", "next": "a"}]))
    assert save_problems(spec)[0][0] == ("steps", 0, "wait", "next")
