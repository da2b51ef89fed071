"""Segments: a tenant's named, reusable conditions ("washer buyers of the last 30 days who
opted in to push"), which scenarios, offers and other segments name instead of copying.

    {"name": "Washer buyers, last 30 days, push",
     "conditions": {"all": [{"purchased": {"category": "washers", "within": "P30D"}},
                            {"consent": "push"}]}}

A segment is written in the scenarios' condition language (`cloud.scenarios.conditions`)
less `trigger` conditions: it describes a customer, not the moment a trigger arrives.
Stored by `cloud.segments` (every version kept); loaded per tenant into a `SegmentBook`
with the tenant's scenarios (`cloud.scenarios.catalog`), so evaluating one costs no query
and a change applies everywhere from the next batch on.

A save is checked against the tenant's other segments: every segment named must exist,
references must not form a cycle (the cycle is named), nor go deeper than
`MAX_SEGMENT_DEPTH`, and no segment may hold more than `MAX_SEGMENT_CONDITIONS` with the
segments it names expanded, nor a scenario more than `MAX_EXPANDED_CONDITIONS`. A segment
that active scenarios, active offers or other segments name cannot be archived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter
from sqlmodel import Session, col, select

from cloud.examples import SEGMENT, example
from cloud.offers.models import Offer
from cloud.scenarios.conditions import (
    MAX_SEGMENT_DEPTH,
    Condition,
    FactKind,
    LoadedSegment,
    ProfileCondition,
    SegmentBook,
    SegmentCondition,
    TriggerCondition,
    facts_read,
    segments_named,
    value_problem,
)
from cloud.scenarios.models import Scenario
from cloud.scenarios.spec import (
    Problem,
    ScenarioSpec,
    conditions_of,
    conditions_under,
    top_conditions,
)
from cloud.segments.models import (
    SEGMENT_DESCRIPTION_MAX,
    SEGMENT_NAME_MAX,
    Segment,
    SegmentVersion,
)
from cloud.suggest import did_you_mean

#: Conditions in one segment with the segments it names expanded: as a scenario's own.
MAX_SEGMENT_CONDITIONS = 200
#: Conditions of a scenario with its segments expanded: what one trigger may cost.
MAX_EXPANDED_CONDITIONS = 1000

CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)
Where = tuple[str | int, ...]


# --- API bodies ------------------------------------------------------------------------------


class SegmentCreate(BaseModel):
    """PUT /tenants/{tenant}/segments/{key}: the whole segment; each save is a new version."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=example(SEGMENT))

    name: Annotated[str, StringConstraints(min_length=1, max_length=SEGMENT_NAME_MAX)]
    description: Annotated[str, StringConstraints(max_length=SEGMENT_DESCRIPTION_MAX)] = ""
    conditions: Condition = Field(description="what a customer must meet to be a member: "
                                  "any scenario condition but `trigger`")


class SegmentPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"key": "washer-buyers-30d", **SEGMENT, "version": 3, "archived": False,
         "created_at": "2026-11-02T09:00:00Z", "updated_at": "2026-12-07T08:30:00Z"},
    ))

    key: str
    name: str
    description: str
    conditions: Condition
    version: int
    archived: bool = Field(description="out of use: nothing may name it; saving it again "
                           "brings it back")
    created_at: datetime
    updated_at: datetime


class SegmentVersionPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"version": 2, **SEGMENT, "saved_at": "2026-11-20T16:45:00Z"},
    ))

    version: int
    name: str
    description: str
    conditions: Condition
    saved_at: datetime


class SegmentDay(BaseModel):
    """A day's count, made by the scenario worker on its first calendar round of the day."""

    day: date
    version: int
    members: int
    customers: int


class SegmentCountPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"segment": "washer-buyers-30d", "version": 3, "members": 1840, "customers": 96512,
         "counted_at": "2026-12-07T10:15:00Z",
         "trend": [{"day": "2026-12-05", "version": 2, "members": 1795, "customers": 96340},
                   {"day": "2026-12-06", "version": 3, "members": 1822, "customers": 96433}]},
    ))

    segment: str
    version: int
    members: int = Field(description="customers in the segment now")
    customers: int = Field(description="customers of the tenant now")
    counted_at: datetime
    trend: list[SegmentDay] = Field(description="the daily counts of the days asked for, "
                                    "oldest first (a day the worker did not run has none)")


def public(row: Segment) -> SegmentPublic:
    return SegmentPublic(key=row.key, name=row.name, description=row.description,
                         conditions=CONDITION.validate_python(row.conditions),
                         version=row.version, archived=row.archived,
                         created_at=row.created_at, updated_at=row.updated_at)


def public_version(row: SegmentVersion) -> SegmentVersionPublic:
    return SegmentVersionPublic(version=row.version, name=row.name,
                                description=row.description,
                                conditions=CONDITION.validate_python(row.conditions),
                                saved_at=row.saved_at)


# --- loading ---------------------------------------------------------------------------------


def build_book(rows: Iterable[Segment]) -> SegmentBook:
    """The segments in use among `rows` (archived ones are left out: nothing names them)."""
    return book_of({row.key: (row.version, CONDITION.validate_python(row.conditions))
                    for row in rows if not row.archived})


def book_of(definitions: Mapping[str, tuple[int, Condition]]) -> SegmentBook:
    """Segments from their (version, condition) by key, each with the facts it reads,
    those of the segments it names included."""
    facts: dict[str, frozenset[FactKind]] = {}

    def facts_of(key: str, seen: frozenset[str]) -> frozenset[FactKind]:
        if key in facts:
            return facts[key]
        condition = definitions[key][1]
        found = set(facts_read(condition))
        for named in segments_named(condition):
            if named in definitions and named not in seen:  # a cycle adds nothing new
                found |= facts_of(named, seen | {named})
        facts[key] = frozenset(found)
        return facts[key]

    return {key: LoadedSegment(key=key, version=version, condition=condition,
                               facts=facts_of(key, frozenset({key})))
            for key, (version, condition) in sorted(definitions.items())}


def with_segment(book: SegmentBook, key: str, condition: Condition) -> SegmentBook:
    """`book` as it would be with segment `key` saved as `condition`."""
    definitions = {one.key: (one.version, one.condition) for one in book.values()}
    definitions[key] = (book[key].version + 1 if key in book else 1, condition)
    return book_of(definitions)


# --- sizes -----------------------------------------------------------------------------------


def expanded_size(condition: Condition, book: SegmentBook, depth: int = 0) -> int:
    """How many conditions evaluating `condition` may go through: each `segment` counts
    itself and its definition's (to `MAX_SEGMENT_DEPTH`, as evaluation stops there)."""
    total = 0
    for _where, one in conditions_under(condition, ()):
        total += 1
        if isinstance(one, SegmentCondition) and depth < MAX_SEGMENT_DEPTH:
            found = book.get(one.segment)
            if found is not None:
                total += expanded_size(found.condition, book, depth + 1)
    return total


def segment_depth(key: str, book: SegmentBook, seen: frozenset[str] = frozenset()) -> int:
    """How many segments deep evaluating segment `key` goes, itself included."""
    found = book.get(key)
    if found is None or key in seen:
        return 0
    named = segments_named(found.condition)
    return 1 + max((segment_depth(one, book, seen | {key}) for one in named), default=0)


def _cycle_from(key: str, book: SegmentBook) -> list[str] | None:
    """A chain of references from segment `key` back to itself, if there is one."""
    def walk(at: str, path: list[str]) -> list[str] | None:
        found = book.get(at)
        if found is None:
            return None
        for named in sorted(segments_named(found.condition)):
            if named == key:
                return [*path, named]
            if named not in path:
                chain = walk(named, [*path, named])
                if chain is not None:
                    return chain
        return None

    return walk(key, [key])


def reaches(condition: Condition | None, key: str, book: SegmentBook) -> bool:
    """Whether evaluating `condition` may consult segment `key`."""
    waiting, seen = list(segments_named(condition)), set()
    while waiting:
        one = waiting.pop()
        if one == key:
            return True
        if one in seen or one not in book:
            continue
        seen.add(one)
        waiting.extend(segments_named(book[one].condition))
    return False


# --- save-time checks ------------------------------------------------------------------------


def unknown_segments(places: Iterable[tuple[Where, Condition]], book: SegmentBook,
                     *, itself: str | None = None) -> list[Problem]:
    """Each `segment` condition naming a segment not in `book` (or archived), at its
    place, with the nearest one in use. `itself`: the segment being saved, which may be
    named (that is a cycle, refused as one)."""
    return [(where, f"segment {one.segment!r} does not exist{did_you_mean(one.segment, book)}")
            for where, one in places
            if isinstance(one, SegmentCondition) and one.segment not in book
            and one.segment != itself]


def segment_problems(
    key: str, segment: SegmentCreate, book: SegmentBook, scenarios: Sequence[Scenario]
) -> list[Problem]:
    """What refuses saving segment `key` as `segment`, among the tenant's segments in use
    (`book`) and active `scenarios`: a `trigger` condition or an oversized value, a
    segment that does not exist, a cycle, references too deep, too many conditions in it
    or in a segment or scenario naming it."""
    places = list(conditions_under(segment.conditions, ("conditions",)))
    problems: list[Problem] = []
    for where, one in places:
        if isinstance(one, TriggerCondition):
            problems.append((where, "a segment describes the customer, not the moment: "
                                    "test the trigger in the scenario that names the segment"))
        elif isinstance(one, ProfileCondition) and (found := value_problem(one.value)):
            problems.append(((*where, "value"), found))
    problems += unknown_segments(places, book, itself=key)
    if problems:
        return problems
    after = with_segment(book, key, segment.conditions)
    cycle = _cycle_from(key, after)
    if cycle is not None:
        where = next(where for where, one in places
                     if isinstance(one, SegmentCondition) and one.segment == cycle[1])
        return [(where, f"segments {' -> '.join(map(repr, cycle))} form a cycle: a segment "
                        "cannot contain itself")]
    return _bound_problems(key, after, scenarios)


def _bound_problems(key: str, book: SegmentBook, scenarios: Sequence[Scenario]
                    ) -> list[Problem]:
    problems: list[Problem] = []
    for other in book.values():
        if other.key != key and not reaches(other.condition, key, book):
            continue
        whose = "it" if other.key == key else f"segment {other.key!r}, which names it,"
        depth = segment_depth(other.key, book)
        if depth > MAX_SEGMENT_DEPTH:
            problems.append(((), f"{whose} would name segments {depth} deep; at most "
                                 f"{MAX_SEGMENT_DEPTH} (counting the segment itself)"))
        size = expanded_size(other.condition, book)
        if size > MAX_SEGMENT_CONDITIONS:
            problems.append(((), f"{whose} would hold {size} conditions with the segments it "
                                 f"names; a segment may hold {MAX_SEGMENT_CONDITIONS}"))
    for row in scenarios:
        spec = ScenarioSpec.model_validate(row.spec)
        if any(reaches(one, key, book) for one in top_conditions(spec)):
            size = scenario_size(spec, book)
            if size > MAX_EXPANDED_CONDITIONS:
                problems.append(((), f"scenario {row.key!r}, which names it, would hold {size} "
                                     "conditions with its segments; a scenario may hold "
                                     f"{MAX_EXPANDED_CONDITIONS}"))
    return problems


def scenario_size(spec: ScenarioSpec, book: SegmentBook) -> int:
    return sum(expanded_size(one, book) for one in top_conditions(spec))


def scenario_segment_problems(spec: ScenarioSpec, book: SegmentBook) -> list[Problem]:
    """What refuses saving a scenario for the segments it names: one that does not exist
    (at its place), or too many conditions with them expanded."""
    problems = unknown_segments(conditions_of(spec), book)
    if not problems:
        size = scenario_size(spec, book)
        if size > MAX_EXPANDED_CONDITIONS:
            problems.append(((), f"{size} conditions with the segments named expanded; a "
                                 f"scenario may hold {MAX_EXPANDED_CONDITIONS}"))
    return problems


def offer_segment_problem(segment: str | None, book: SegmentBook) -> str | None:
    """Why an offer may not be restricted to `segment`, or None."""
    if segment is None or segment in book:
        return None
    return f"segment {segment!r} does not exist{did_you_mean(segment, book)}"


# --- who names a segment ---------------------------------------------------------------------


def referrers(session: Session, *, tenant: str, key: str) -> list[str]:
    """What names segment `key` directly and would break without it: active scenarios,
    active offers, segments in use. (Those that name it through another segment go
    through that one, which is listed.) A switched-off scenario or offer is not listed:
    saving it again checks its segments anew."""
    found: list[str] = []
    for row in session.exec(
        select(Scenario).where(Scenario.tenant == tenant, col(Scenario.active).is_(True))
        .order_by(col(Scenario.key))
    ).all():
        spec = ScenarioSpec.model_validate(row.spec)
        if any(key in segments_named(one) for one in top_conditions(spec)):
            found.append(f"scenario {row.key!r}")
    found += [f"offer {offer_key!r}" for offer_key in session.exec(
        select(Offer.key).where(Offer.tenant == tenant, Offer.segment == key,
                                col(Offer.active).is_(True)).order_by(col(Offer.key))
    ).all()]
    found += [f"segment {row.key!r}" for row in session.exec(
        select(Segment).where(Segment.tenant == tenant, col(Segment.archived).is_(False),
                              Segment.key != key).order_by(col(Segment.key))
    ).all() if key in segments_named(CONDITION.validate_python(row.conditions))]
    return found


def versions_decided(journey_contexts: Iterable[Mapping[str, object]]
                     ) -> dict[tuple[str, int], int]:
    """How many journeys each (segment, version) decided, from the `segments` their
    contexts record (`cloud.scenarios.engine`)."""
    counts: dict[tuple[str, int], int] = {}
    for context in journey_contexts:
        recorded = context.get("segments")
        if not isinstance(recorded, Mapping):
            continue
        for key, version in recorded.items():
            if isinstance(key, str) and isinstance(version, int):
                counts[(key, version)] = counts.get((key, version), 0) + 1
    return dict(sorted(counts.items()))
