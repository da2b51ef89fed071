"""Conditions a customer must meet, as data, and their evaluation against `CustomerFacts`.

    {"all": [{"tag": "newsletter"},
             {"purchased": {"category": "washers", "within": "P30D"}},
             {"not": {"purchased": {"category": "dryers"}}},
             {"message": {"scenario": "store-cross-sell", "opened": true, "converted": false}}]}

Evaluation is pure: facts are loaded once per batch of triggers (see `facts`), so
checking a hundred scenarios against one trigger costs no query. A `segment` condition
names one of the tenant's segments (`cloud.scenarios.segments`): its definition comes
with the evaluation (a `SegmentBook`, loaded with the tenant's scenarios), so a segment
costs no query either, and a change to it applies to every scenario using it from the
next batch on.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from cloud.channels import Channel, ConsentKind
from cloud.segments.models import SegmentKey

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$")]
Comparison = Literal["eq", "ne", "in", "gt", "gte", "lt", "lte", "exists"]
#: How far back a condition may look; beyond it, facts are not loaded.
MAX_LOOKBACK = timedelta(days=3 * 366)


#: The most a value to compare with may take, as JSON: a list of a few hundred store keys
#: or categories fits; a megabyte stored in every version of a scenario does not.
MAX_VALUE_JSON = 4096


def value_problem(value: Any) -> str | None:
    """What is wrong with a value to compare with (a saved scenario's), or None."""
    try:
        size = len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return "must be JSON: a string, number, boolean, null or a list"
    if size > MAX_VALUE_JSON:
        return f"is {size} characters as JSON; at most {MAX_VALUE_JSON}"
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- facts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Purchase:
    sku: str
    category: str
    ordered_at: datetime


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message the customer was sent (or will be: held for quiet hours)."""

    message_id: int
    scenario: str | None
    step: str | None
    channel: str
    created_at: datetime
    opened_at: datetime | None
    clicked_at: datetime | None
    converted_at: datetime | None
    product_category: str | None
    product_sku: str | None
    offer_id: int | None


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What conditions may ask about one customer, loaded in bulk for a batch."""

    customer_id: int
    tenant: str
    profile: Mapping[str, Any]
    tags: frozenset[str] = frozenset()
    consents: frozenset[str] = frozenset()
    purchases: tuple[Purchase, ...] = ()
    #: Lifetime spend per ISO 4217 currency: paid, less refunds, orders not cancelled.
    spend: Mapping[str, Decimal] = field(default_factory=dict)
    messages: tuple[SentMessage, ...] = ()
    #: Latest time of each kind of activity: "order", "visit", "click", "signup".
    last: Mapping[str, datetime] = field(default_factory=dict)


class FactKind(StrEnum):
    """The parts of `CustomerFacts` that cost a query each. The customer's profile and
    consents are always loaded (every send checks consent); these only when some
    condition or offer of the tenant's scenarios reads them (`facts_read`)."""

    TAGS = "tags"
    #: Purchases, and the last order.
    PURCHASES = "purchases"
    SPEND = "spend"
    #: Messages, and the last click.
    MESSAGES = "messages"
    VISITS = "visits"


ALL_FACTS = frozenset(FactKind)


# --- condition models ----------------------------------------------------------------------


class AttributeFilter(_Model):
    """A test on a trigger's attributes (which store, which geofence, which field)."""

    attribute: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,63}$")]
    op: Comparison = "eq"
    value: Any = None


class TagCondition(_Model):
    tag: Name


class ProfileCondition(_Model):
    """A profile field ("first_name", "locale") or attribute ("attributes.tier")."""

    profile: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*(\.[A-Za-z0-9_]+)?$")]
    op: Comparison = "eq"
    value: Any = None


class ConsentCondition(_Model):
    consent: ConsentKind


class PurchaseQuery(_Model):
    category: Name | None = None
    sku: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    within: timedelta | None = Field(default=None, le=MAX_LOOKBACK)


class PurchasedCondition(_Model):
    """Bought something (of a category or sku), ever or within a time."""

    purchased: PurchaseQuery


class MessageQuery(_Model):
    scenario: Name | None = None
    step: Name | None = None
    channel: Channel | None = None
    opened: bool | None = None
    clicked: bool | None = None
    converted: bool | None = None
    within: timedelta | None = Field(default=None, le=MAX_LOOKBACK)


class MessageCondition(_Model):
    """A message matching every given property exists ("opened but not converted")."""

    message: MessageQuery


class SpendQuery(_Model):
    op: Literal["gt", "gte", "lt", "lte"] = "gte"
    value: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
    #: The currency whose spend is compared; without it, the condition holds when the
    #: spend in any currency compares as asked (a shop selling in one currency needs
    #: none; one selling in several should name it, or 100 means 100 of anything).
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None


class SpendCondition(_Model):
    """Lifetime spend (paid, less refunds, over orders not cancelled) compares as
    given, in one currency or in any."""

    spend: SpendQuery


class SinceQuery(_Model):
    event: Literal["order", "visit", "click", "signup"]
    more_than: timedelta | None = None
    less_than: timedelta | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> Self:
        if self.more_than is None and self.less_than is None:
            raise ValueError("since needs more_than or less_than")
        return self


class SinceCondition(_Model):
    """Time since the customer last ordered / visited / clicked / signed up."""

    since: SinceQuery


class TriggerCondition(_Model):
    trigger: AttributeFilter


class SegmentCondition(_Model):
    """The customer is in the named segment, as it is defined when the condition is
    evaluated (not when the scenario was saved)."""

    segment: SegmentKey


class AllCondition(_Model):
    all: list[Condition] = Field(min_length=1, max_length=20)


class AnyCondition(_Model):
    any: list[Condition] = Field(min_length=1, max_length=20)


class NotCondition(_Model):
    not_: Condition = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


#: Each kind of condition by the one key that names it ({"tag": ...}, {"all": [...]}).
CONDITION_KINDS: Mapping[str, type[BaseModel]] = {
    "all": AllCondition, "any": AnyCondition, "not": NotCondition, "tag": TagCondition,
    "profile": ProfileCondition, "consent": ConsentCondition,
    "purchased": PurchasedCondition, "message": MessageCondition, "spend": SpendCondition,
    "since": SinceCondition, "trigger": TriggerCondition, "segment": SegmentCondition,
}
_KIND_OF_MODEL = {model: kind for kind, model in CONDITION_KINDS.items()}


def condition_kind(value: Any) -> str | None:
    """Which kind of condition `value` is, by the key naming it; None when it names none
    or several. Choosing the kind first means a mistake is reported once, inside the
    condition meant (its tag's pattern), not once for every kind it is not."""
    if isinstance(value, BaseModel):
        return _KIND_OF_MODEL.get(type(value))
    if isinstance(value, Mapping):
        named = [kind for kind in CONDITION_KINDS if kind in value]
        return named[0] if len(named) == 1 else None
    return None


Condition = Annotated[
    Annotated[AllCondition, Tag("all")] | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")] | Annotated[TagCondition, Tag("tag")]
    | Annotated[ProfileCondition, Tag("profile")] | Annotated[ConsentCondition, Tag("consent")]
    | Annotated[PurchasedCondition, Tag("purchased")]
    | Annotated[MessageCondition, Tag("message")] | Annotated[SpendCondition, Tag("spend")]
    | Annotated[SinceCondition, Tag("since")] | Annotated[TriggerCondition, Tag("trigger")]
    | Annotated[SegmentCondition, Tag("segment")],
    Discriminator(
        condition_kind, custom_error_type="condition_kind",
        custom_error_message="a condition names exactly one of: " + ", ".join(CONDITION_KINDS),
    ),
]

for _model in (AllCondition, AnyCondition, NotCondition):
    _model.model_rebuild()


# --- segments ------------------------------------------------------------------------------

#: How many segments deep references may go (a segment naming one naming one...). Saves
#: past it are refused; evaluation stops there too, so a cycle that two concurrent saves
#: could still make matches nobody instead of recursing for ever.
MAX_SEGMENT_DEPTH = 4


@dataclass(frozen=True, slots=True)
class LoadedSegment:
    """A segment's current definition, as evaluation reads it."""

    key: str
    version: int
    condition: Condition
    #: What evaluating it reads, the segments it names included.
    facts: frozenset[FactKind]


#: The tenant's segments by key: what `segment` conditions name.
SegmentBook = Mapping[str, LoadedSegment]
NO_SEGMENTS: SegmentBook = MappingProxyType({})
_NO_TRIGGER: Mapping[str, Any] = MappingProxyType({})


# --- evaluation ----------------------------------------------------------------------------

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
}


def compare(actual: Any, op: str, expected: Any) -> bool:
    """`actual op expected`; False (not an error) when the two cannot be compared, since a
    profile field a customer never filled in simply does not match."""
    if op == "exists":
        present = actual is not None and actual != ""
        return present if expected in (None, True) else not present
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op == "in":
        return isinstance(expected, list) and any(_equal(actual, item) for item in expected)
    if actual is None:
        return False
    try:
        return _ORDER[op](_comparable(actual), _comparable(expected))
    except (TypeError, InvalidOperation, ValueError):
        return False


def _equal(actual: Any, expected: Any) -> bool:
    if type(actual) is str and type(expected) is str:
        return actual == expected  # the common case (a store, a category): nothing to convert
    # A boolean is not the number 1 (Python says True == 1): `true` must not match 1.
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    return bool(_normalise(actual) == _normalise(expected))


def _normalise(value: Any) -> Any:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return Decimal(str(value))
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def _comparable(value: Any) -> Any:
    if isinstance(value, bool):
        raise TypeError("booleans are not ordered")
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return value
    raise TypeError(type(value).__name__)


def matches_attributes(
    filters: list[AttributeFilter], attributes: Mapping[str, Any]
) -> bool:
    return all(compare(attributes.get(f.attribute), f.op, f.value) for f in filters)


def profile_value(facts: CustomerFacts, path: str) -> Any:
    head, _, rest = path.partition(".")
    value = facts.profile.get(head)
    if rest:
        return value.get(rest) if isinstance(value, Mapping) else None
    return value


def evaluate(
    condition: Condition, facts: CustomerFacts, trigger: Mapping[str, Any], now: datetime,
    segments: SegmentBook = NO_SEGMENTS,
) -> bool:
    """Whether `facts` (and the trigger's attributes) meet `condition` at `now`; a
    `segment` condition by its definition in `segments` (one not there matches nobody)."""
    return _evaluate(condition, facts, trigger, now, segments, 0)


def _evaluate(
    condition: Condition, facts: CustomerFacts, trigger: Mapping[str, Any], now: datetime,
    segments: SegmentBook, depth: int,
) -> bool:
    if isinstance(condition, AllCondition):
        return all(_evaluate(part, facts, trigger, now, segments, depth)
                   for part in condition.all)
    if isinstance(condition, AnyCondition):
        return any(_evaluate(part, facts, trigger, now, segments, depth)
                   for part in condition.any)
    if isinstance(condition, NotCondition):
        return not _evaluate(condition.not_, facts, trigger, now, segments, depth)
    if isinstance(condition, SegmentCondition):
        found = segments.get(condition.segment)
        if found is None or depth >= MAX_SEGMENT_DEPTH:
            return False
        # A segment describes the customer, not the moment: it sees no trigger.
        return _evaluate(found.condition, facts, _NO_TRIGGER, now, segments, depth + 1)
    if isinstance(condition, TagCondition):
        return condition.tag in facts.tags
    if isinstance(condition, ProfileCondition):
        return compare(profile_value(facts, condition.profile), condition.op, condition.value)
    if isinstance(condition, ConsentCondition):
        return condition.consent in facts.consents
    if isinstance(condition, PurchasedCondition):
        return _purchased(condition.purchased, facts, now)
    if isinstance(condition, MessageCondition):
        return find_message(condition.message, facts, now) is not None
    if isinstance(condition, SpendCondition):
        return _spend(condition.spend, facts)
    if isinstance(condition, SinceCondition):
        return _since(condition.since, facts, now)
    return compare(trigger.get(condition.trigger.attribute), condition.trigger.op,
                   condition.trigger.value)


#: What the time since each event is measured from (`SinceQuery.event`).
_SINCE_FACTS: dict[str, frozenset[FactKind]] = {
    "order": frozenset({FactKind.PURCHASES}), "visit": frozenset({FactKind.VISITS}),
    "click": frozenset({FactKind.MESSAGES}), "signup": frozenset(),
}


def facts_read(
    condition: Condition, segments: SegmentBook = NO_SEGMENTS
) -> frozenset[FactKind]:
    """The parts of `CustomerFacts` evaluating `condition` may read (`evaluate` on facts
    holding only those gives the same answer), those of the segments it names in
    `segments` included."""
    if isinstance(condition, AllCondition | AnyCondition):
        parts = condition.all if isinstance(condition, AllCondition) else condition.any
        return frozenset().union(*(facts_read(part, segments) for part in parts))
    if isinstance(condition, NotCondition):
        return facts_read(condition.not_, segments)
    if isinstance(condition, TagCondition):
        return frozenset({FactKind.TAGS})
    if isinstance(condition, PurchasedCondition):
        return frozenset({FactKind.PURCHASES})
    if isinstance(condition, MessageCondition):
        return frozenset({FactKind.MESSAGES})
    if isinstance(condition, SpendCondition):
        return frozenset({FactKind.SPEND})
    if isinstance(condition, SinceCondition):
        return _SINCE_FACTS[condition.since.event]
    if isinstance(condition, SegmentCondition):
        found = segments.get(condition.segment)
        return found.facts if found is not None else frozenset()
    return frozenset()  # profile, consent, trigger: always at hand


def _spend(query: SpendQuery, facts: CustomerFacts) -> bool:
    """A customer who spent nothing in a currency has spent 0 in it (so "less than 100"
    holds for a customer who never ordered)."""
    test = _ORDER[query.op]
    if query.currency is not None:
        return test(facts.spend.get(query.currency, Decimal(0)), query.value)
    return any(test(amount, query.value) for amount in (facts.spend.values() or [Decimal(0)]))


def in_segment(key: str, facts: CustomerFacts, now: datetime, segments: SegmentBook) -> bool:
    """Whether the customer is in segment `key` as `segments` defines it now."""
    return evaluate(SegmentCondition(segment=key), facts, {}, now, segments)


def segments_named(condition: Condition | None) -> frozenset[str]:
    """The segments `condition` names itself (not those its segments name)."""
    if condition is None:
        return frozenset()
    if isinstance(condition, AllCondition | AnyCondition):
        parts = condition.all if isinstance(condition, AllCondition) else condition.any
        return frozenset().union(*(segments_named(part) for part in parts))
    if isinstance(condition, NotCondition):
        return segments_named(condition.not_)
    if isinstance(condition, SegmentCondition):
        return frozenset({condition.segment})
    return frozenset()


def segments_reached(condition: Condition | None, segments: SegmentBook) -> dict[str, int]:
    """Every segment evaluating `condition` may consult (those its segments name too),
    with the version in `segments`: what a journey records as having decided it."""
    reached: dict[str, int] = {}
    waiting = sorted(segments_named(condition))
    while waiting:
        key = waiting.pop()
        found = segments.get(key)
        if key in reached or found is None:
            continue
        reached[key] = found.version
        waiting.extend(segments_named(found.condition))
    return dict(sorted(reached.items()))


def _purchased(query: PurchaseQuery, facts: CustomerFacts, now: datetime) -> bool:
    after = now - query.within if query.within is not None else None
    return any(
        (query.category is None or purchase.category == query.category)
        and (query.sku is None or purchase.sku == query.sku)
        and (after is None or purchase.ordered_at >= after)
        for purchase in facts.purchases
    )


def find_message(query: MessageQuery, facts: CustomerFacts, now: datetime) -> SentMessage | None:
    """The newest message matching `query`, if any."""
    after = now - query.within if query.within is not None else None
    for message in facts.messages:  # newest first
        if after is not None and message.created_at < after:
            break
        if query.scenario is not None and message.scenario != query.scenario:
            continue
        if query.step is not None and message.step != query.step:
            continue
        if query.channel is not None and message.channel != query.channel:
            continue
        if not _flag(query.opened, message.opened_at or message.clicked_at):
            continue
        if not _flag(query.clicked, message.clicked_at):
            continue
        if not _flag(query.converted, message.converted_at):
            continue
        return message
    return None


def _flag(wanted: bool | None, moment: datetime | None) -> bool:
    return wanted is None or wanted == (moment is not None)


def _since(query: SinceQuery, facts: CustomerFacts, now: datetime) -> bool:
    last = facts.last.get(query.event)
    elapsed = None if last is None else now - last
    if query.more_than is not None and elapsed is not None and elapsed <= query.more_than:
        return False
    return not (query.less_than is not None and (elapsed is None or elapsed >= query.less_than))
