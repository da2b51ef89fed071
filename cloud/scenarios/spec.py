"""A scenario as the shop's admin writes it: an entry point, conditions, and steps.

    {"key": "cart-abandoned", "name": "Coupon 15 minutes after an abandoned cart",
     "entry": {"event": "cart.abandoned"},
     "exit_on": ["order.created"],
     "steps": [
       {"id": "wait", "type": "wait", "for": "PT15M"},
       {"id": "coupon", "type": "send", "channels": ["sms", "push"], "template": "cart",
        "offer": {"trigger_category": true, "min_discount": 15},
        "coupon": {"valid_for": "PT24H"}}]}

Durations are ISO 8601 ("PT15M", "P1D") or seconds. Steps run in order; `next` (and the
`then`/`else`, `yes`/`no` of branches and waits) jump to another step's id, "end" ends.
Everything is validated when the scenario is saved: unknown step ids, unreachable jumps,
an empty channel list, a wait without a timeout are refused by the model; loops, attributes
a trigger does not carry and sizes past the bounds by `save_problems`, which the API runs
on every save but not on a stored definition read back (one saved by an earlier release
keeps running). Nothing is left to be found at run time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints, model_validator

from cloud.channels import Channel
from cloud.examples import SCENARIO, example
from cloud.scenarios.conditions import (
    NO_SEGMENTS,
    AllCondition,
    AnyCondition,
    AttributeFilter,
    Condition,
    FactKind,
    NotCondition,
    ProfileCondition,
    SegmentBook,
    TriggerCondition,
    condition_kind,
    facts_read,
    value_problem,
)
from cloud.suggest import did_you_mean
from cloud.triggers import LOCATION_KINDS, TRIGGER_ATTRIBUTES, TriggerKind
from shared.errors import LocatedError

#: The step id every jump may name to end a journey.
END = "end"
#: Bounds that keep one scenario cheap to evaluate and to read.
MAX_STEPS = 50
#: Conditions in one scenario, nested ones included: a long hand-written audience is
#: some tens; past this it belongs in the shop's own data (a tag).
MAX_CONDITIONS = 200
#: A journey longer than this is a mistake (a wait typed in seconds instead of days).
MAX_WAIT = timedelta(days=400)

Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
StepId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$")]
Duration = Annotated[timedelta, Field(gt=timedelta(0), le=MAX_WAIT)]
#: A problem a validator found: where below the model it is, and what is wrong.
Problem = tuple[tuple[str | int, ...], str]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Reentry(StrEnum):
    """When the same customer may start the scenario again."""

    #: Once per customer, ever (a welcome series).
    ONCE = "once"
    #: Again once the previous journey has finished (and the cooldown has passed).
    AFTER_EXIT = "after_exit"
    #: On every matching trigger (after the cooldown).
    ALWAYS = "always"


class Entry(_Model):
    event: TriggerKind
    where: list[AttributeFilter] = Field(default_factory=list, max_length=10)
    reentry: Reentry = Reentry.AFTER_EXIT
    #: No new journey within this time of the previous one's start (a customer seen by
    #: three gateways in one visit is one visit, not three greetings).
    cooldown: Duration | None = None
    #: For `inactivity`: how many days without an order, visit or click.
    inactive_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    #: For `date`: which date field (a profile field such as birth_date).
    date_field: Literal["birth_date"] | None = None
    #: For `spend.changed`: the amount lifetime spend must cross.
    spend_crosses: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)] | None = None

    @model_validator(mode="after")
    def _event_parameters(self) -> Self:
        needs = {
            TriggerKind.INACTIVITY: ("inactive_days", self.inactive_days),
            TriggerKind.DATE: ("date_field", self.date_field),
            TriggerKind.SPEND_CHANGED: ("spend_crosses", self.spend_crosses),
        }
        problems: list[Problem] = []
        for kind, (name, value) in needs.items():
            if self.event is kind and value is None:
                problems.append(((name,), f"an entry on {kind.value!r} needs {name}"))
            if self.event is not kind and value is not None:
                problems.append(((name,), f"{name} applies only to entries on {kind.value!r}"))
        if problems:
            raise LocatedError(problems)
        return self


def where_problems(filters: Sequence[AttributeFilter], kind: TriggerKind,
                   at: tuple[str | int, ...]) -> list[Problem]:
    """Each filter must test an attribute `kind` triggers carry (`TRIGGER_ATTRIBUTES`):
    a misspelt one would never match, and the journey would silently never start."""
    known = TRIGGER_ATTRIBUTES[kind]
    return [((*at, index, "attribute"), unknown_attribute(one.attribute, kind))
            for index, one in enumerate(filters) if one.attribute not in known]


def unknown_attribute(name: str, kind: TriggerKind) -> str:
    known = TRIGGER_ATTRIBUTES[kind]
    if not known:
        return f"{kind.value} triggers carry no attributes to test"
    return (f"{kind.value} triggers carry no attribute {name!r}{did_you_mean(name, known)}; "
            f"they carry: {', '.join(known)}")


class OfferChoice(_Model):
    """Which offer a send carries. Exactly one way of choosing:

    - `key`: a named offer;
    - `cross_sell`: the best offer on a category complementary to what the trigger's
      order (or, without one, the customer's recent purchases) contained;
    - `trigger_category`: an offer on the category of the trigger's items (the cart);
    - `message_category`: an offer on the category of the latest message of that
      scenario the customer opened without buying (an escalation).

    `min_discount` keeps only offers at least that generous. Never an offer on
    something the customer already bought.
    """

    key: Key | None = None
    cross_sell: bool = False
    trigger_category: bool = False
    message_category: Key | None = None
    min_discount: Annotated[int, Field(ge=1, le=100)] | None = None
    #: What counts as "recent purchases" for cross-sell without an order trigger.
    purchased_within: Duration = timedelta(days=30)

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        ways = [self.key is not None, self.cross_sell, self.trigger_category,
                self.message_category is not None]
        if sum(ways) != 1:
            raise ValueError(
                "choose the offer one way: key, cross_sell, trigger_category or message_category"
            )
        return self


class CouponChoice(_Model):
    valid_for: Duration


class SendOverride(_Model):
    """What an A/B variant changes in a send step."""

    template: Key | None = None
    offer: OfferChoice | None = None


class SendStep(_Model):
    id: StepId
    type: Literal["send"]
    #: In order of preference: the first channel with consent and an address is used.
    channels: list[Channel] = Field(min_length=1, max_length=4)
    template: Key
    offer: OfferChoice | None = None
    coupon: CouponChoice | None = None
    #: Where the message's link leads: the offer's product page by default.
    link_url: HttpUrl | None = None
    #: A message that is pointless later (a store greeting) expires unsent after this.
    expires_after: Duration | None = None
    #: Requests for consent itself (the double opt-in email) need no marketing consent
    #: on the channel; they go only to an address the customer just gave, are never
    #: capped, and carry no offer (sent without marketing consent, they must not market).
    transactional: bool = False
    variants: dict[Key, SendOverride] = Field(default_factory=dict)
    next: StepId | None = None

    @model_validator(mode="after")
    def _coupon_needs_offer(self) -> Self:
        problems: list[Problem] = []
        if self.coupon is not None and self.offer is None:
            problems.append((("coupon",), f"step {self.id!r}: a coupon needs an offer"))
        if len(set(self.channels)) != len(self.channels):
            problems.append((("channels",), f"step {self.id!r}: a channel is listed twice"))
        overriding = sorted(key for key, override in self.variants.items() if override.offer)
        if self.transactional and (self.offer is not None or overriding):
            where = ("offer",) if self.offer is not None else ("variants", overriding[0])
            problems.append((where, f"step {self.id!r}: a transactional send carries no offer"))
        if problems:
            raise LocatedError(problems)
        return self


class WaitStep(_Model):
    id: StepId
    type: Literal["wait"]
    wait_for: Duration = Field(alias="for")
    next: StepId | None = None


class WaitForEventStep(_Model):
    """Wait until the customer does `event` (yes branch) or `timeout` passes (no branch)."""

    id: StepId
    type: Literal["wait_for"]
    event: TriggerKind
    where: list[AttributeFilter] = Field(default_factory=list, max_length=10)
    timeout: Duration
    yes: StepId | None = None
    no: StepId | None = None


class BranchStep(_Model):
    id: StepId
    type: Literal["branch"]
    condition: Condition = Field(alias="if")
    then: StepId | None = None
    otherwise: StepId | None = Field(default=None, alias="else")


class TagStep(_Model):
    id: StepId
    type: Literal["tag"]
    add: list[Tag] = Field(default_factory=list, max_length=20)
    remove: list[Tag] = Field(default_factory=list, max_length=20)
    next: StepId | None = None


class RemoveFromListStep(_Model):
    """Take the customer off a mailing list: its tag goes and, for the newsletter, the
    email consent is withdrawn in the ledger (source: this scenario)."""

    id: StepId
    type: Literal["remove_from_list"]
    list: Tag
    next: StepId | None = None


class IssueCouponStep(_Model):
    id: StepId
    type: Literal["issue_coupon"]
    offer: OfferChoice
    coupon: CouponChoice
    next: StepId | None = None


class LoyaltyCreditStep(_Model):
    id: StepId
    type: Literal["loyalty_credit"]
    amount: Annotated[Decimal, Field(gt=0, max_digits=9, decimal_places=2)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    next: StepId | None = None


class WebhookStep(_Model):
    """POST the journey's facts (customer id, scenario, step, trigger) to the shop."""

    id: StepId
    type: Literal["webhook"]
    url: HttpUrl
    next: StepId | None = None


Step = Annotated[
    SendStep | WaitStep | WaitForEventStep | BranchStep | TagStep | RemoveFromListStep
    | IssueCouponStep | LoyaltyCreditStep | WebhookStep,
    Field(discriminator="type"),
]


class Variant(_Model):
    key: Key
    weight: Annotated[int, Field(ge=1, le=1000)] = 1


class Cap(_Model):
    """At most `max` messages from this scenario per customer within `per`."""

    max: Annotated[int, Field(ge=1, le=1000)]
    per: Duration


class ScenarioSpec(_Model):
    model_config = ConfigDict(json_schema_extra=example(
        SCENARIO,
    ))

    key: Key
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    entry: Entry
    #: Checked when a journey would start; a customer who fails them does not enter.
    conditions: Condition | None = None
    #: Events that end a running journey (a purchase ends the cart reminders).
    exit_on: list[TriggerKind] = Field(default_factory=list, max_length=10)
    #: Percent of customers kept out of the scenario to measure what it changes.
    holdout_percent: Annotated[int, Field(ge=0, le=90)] = 0
    variants: list[Variant] = Field(default_factory=list, max_length=10)
    caps: list[Cap] = Field(default_factory=list, max_length=5)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Checks across steps, each problem placed at the step and field concerned (as
        ["steps", 2, "wait", "next"]), so an editor can show it there."""
        problems = [*self._step_id_problems(), *self._jump_problems(),
                    *self._variant_problems()]
        if problems:
            raise LocatedError(problems)
        return self

    def _step_id_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        seen: set[str] = set()
        for index, step in enumerate(self.steps):
            where = ("steps", index, step.type, "id")
            if step.id == END:
                problems.append((where, f"{END!r} is reserved for ending the journey"))
            elif step.id in seen:
                problems.append(
                    (where, f"step id {step.id!r} is used twice: step ids must be unique")
                )
            seen.add(step.id)
        return problems

    def _jump_problems(self) -> list[Problem]:
        known = {step.id for step in self.steps} | {END}
        return [
            (("steps", index, step.type, field),
             f"step {step.id!r} jumps to unknown step {target!r}")
            for index, step in enumerate(self.steps)
            for field, target in jumps(step)
            if target not in known
        ]

    def _variant_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        variant_keys: set[str] = set()
        for index, variant in enumerate(self.variants):
            if variant.key in variant_keys:
                problems.append((("variants", index, "key"),
                                 f"variant {variant.key!r} is listed twice: variant keys "
                                 "must be unique"))
            variant_keys.add(variant.key)
        for index, step in enumerate(self.steps):
            if isinstance(step, SendStep):
                problems.extend(
                    (("steps", index, step.type, "variants", name),
                     f"step {step.id!r} overrides unknown variant {name!r}")
                    for name in sorted(set(step.variants) - variant_keys)
                )
        return problems

    def successors(self, index: int) -> list[str]:
        """The step ids step `index` may go to next: its jumps, and the step after it
        where a jump is not given (`"end"` past the last step)."""
        step = self.steps[index]
        after = self.steps[index + 1].id if index + 1 < len(self.steps) else END
        if isinstance(step, WaitForEventStep):
            return [step.yes or after, step.no or after]
        if isinstance(step, BranchStep):
            return [step.then or after, step.otherwise or after]
        return [step.next or after]

    def _loop_problems(self) -> list[Problem]:
        """Loops are refused: nothing bounds how often a journey goes round one (a wait
        that jumps back wakes for ever; a cap only stops the sends, not the journey). A
        reminder sent again is written as its steps listed again. Each loop is placed at
        the jump that closes it."""
        index_of = {step.id: index for index, step in enumerate(self.steps)}
        problems: list[Problem] = []
        state: dict[str, str] = {}  # "open" while on the current path, "done" after

        def visit(step_id: str, path: list[str]) -> None:
            state[step_id] = "open"
            index = index_of[step_id]
            step = self.steps[index]
            for field, target in _jump_fields(self, index):
                if target == END:
                    continue
                if state.get(target) == "open":
                    here = [*path, step_id]
                    loop = [*here[here.index(target):], target]
                    problems.append((("steps", index, step.type, field),
                                     f"steps {' -> '.join(map(repr, loop))} form a loop: a "
                                     "journey could go round it for ever; loops are not "
                                     "allowed (list a repeated reminder's steps again)"))
                elif target not in state:
                    visit(target, [*path, step_id])
            state[step_id] = "done"

        visit(self.steps[0].id, [])
        return problems

    def unsupplied(self, index: int, offer: OfferChoice | None) -> dict[str, str]:
        """The sections of template fields the send at `index` (with `offer`, the step's
        or a variant's) cannot fill, each with what would fill it: a template using one
        would fail for every customer, so scenarios saying so are refused at save."""
        step = self.steps[index]
        assert isinstance(step, SendStep)
        missing: dict[str, str] = {}
        if offer is None:
            missing["product"] = missing["offer"] = "give the step an offer"
        if step.coupon is None:
            missing["coupon"] = "give the step a coupon"
        if self.entry.event not in LOCATION_KINDS:
            missing["store"] = "only journeys started by a store visit or a geofence have one"
        if self._reachable_without_loyalty(index):
            missing["loyalty"] = "only sends after a loyalty_credit step (on every path) have it"
        return missing

    def _reachable_without_loyalty(self, index: int) -> bool:
        index_of = {step.id: position for position, step in enumerate(self.steps)}
        seen: set[int] = set()
        stack = [0]
        while stack:
            at = stack.pop()
            if at in seen or isinstance(self.steps[at], LoyaltyCreditStep):
                continue
            if at == index:
                return True
            seen.add(at)
            stack.extend(index_of[target] for target in self.successors(at) if target != END)
        return False

    def step_index(self, step_id: str) -> int:
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                return index
        raise KeyError(step_id)

    def facts_read(self, segments: SegmentBook = NO_SEGMENTS) -> frozenset[FactKind]:
        """The parts of customer facts this scenario's conditions and offers may read
        (those of the segments its conditions name in `segments` included)."""
        found = (set(facts_read(self.conditions, segments)) if self.conditions is not None
                 else set())
        for step in self.steps:
            if isinstance(step, BranchStep):
                found |= facts_read(step.condition, segments)
        if self.has_offers():
            # Cross-selling reads purchases, escalating reads messages.
            found |= {FactKind.PURCHASES, FactKind.MESSAGES}
        return frozenset(found)

    def has_offers(self) -> bool:
        """Whether some step (or variant) of the scenario carries an offer."""
        for step in self.steps:
            offers = [step.offer] if isinstance(step, SendStep | IssueCouponStep) else []
            if isinstance(step, SendStep):
                offers += [override.offer for override in step.variants.values()]
            if any(offer is not None for offer in offers):
                return True
        return False

    def templates(self) -> set[tuple[str, Channel]]:
        """Every (template key, channel) a send of this scenario may use."""
        found: set[tuple[str, Channel]] = set()
        for step in self.steps:
            if isinstance(step, SendStep):
                keys = {step.template} | {
                    override.template for override in step.variants.values() if override.template
                }
                found.update((key, channel) for key in keys for channel in step.channels)
        return found


def save_problems(spec: ScenarioSpec) -> list[Problem]:
    """What is refused when a definition is saved, beyond its shape: attributes no trigger
    of the kind carries, sizes past the bounds, loops. Not checked when a stored
    definition is read, so one saved by an earlier release keeps loading and running; the
    next save of it must pass. Placed as pydantic places problems."""
    problems = [
        *where_problems(spec.entry.where, spec.entry.event, ("entry", "where")),
        *(problem for index, step in enumerate(spec.steps) if isinstance(step, WaitForEventStep)
          for problem in where_problems(step.where, step.event,
                                        ("steps", index, step.type, "where"))),
        *_trigger_condition_problems(spec), *_size_problems(spec), *_value_problems(spec),
    ]
    return problems or spec._loop_problems()


def _value_problems(spec: ScenarioSpec) -> list[Problem]:
    """Every value a filter or profile condition compares with, within its bound. (A
    send's variant overrides are bounded already: each names one of at most 10 variants.)"""
    problems: list[Problem] = []

    def check(value: object, at: tuple[str | int, ...]) -> None:
        found = value_problem(value)
        if found is not None:
            problems.append(((*at, "value"), found))

    for index, one in enumerate(spec.entry.where):
        check(one.value, ("entry", "where", index))
    for index, step in enumerate(spec.steps):
        if isinstance(step, WaitForEventStep):
            for position, one in enumerate(step.where):
                check(one.value, ("steps", index, step.type, "where", position))
    for where, condition, _ in _all_conditions(spec):
        if isinstance(condition, ProfileCondition):
            check(condition.value, where)
        elif isinstance(condition, TriggerCondition):
            check(condition.trigger.value, where)
    return problems


def _size_problems(spec: ScenarioSpec) -> list[Problem]:
    """Conditions nest (`all` of 20 `any` of 20...): their total is bounded, so one
    scenario stays cheap to check against every trigger."""
    total = sum(1 for _ in _all_conditions(spec))
    if total > MAX_CONDITIONS:
        return [((), f"{total} conditions in all; a scenario may hold {MAX_CONDITIONS}")]
    return []


def _trigger_condition_problems(spec: ScenarioSpec) -> list[Problem]:
    """A `trigger` condition must name an attribute one of the triggers it may see
    carries (`_all_conditions` says which)."""
    problems: list[Problem] = []
    for where, condition, kinds in _all_conditions(spec):
        if not isinstance(condition, TriggerCondition):
            continue
        name = condition.trigger.attribute
        if any(name in TRIGGER_ATTRIBUTES[kind] for kind in kinds):
            continue
        known = {attribute for kind in kinds for attribute in TRIGGER_ATTRIBUTES[kind]}
        message = (unknown_attribute(name, next(iter(kinds))) if len(kinds) == 1 else
                   f"no trigger this step can see carries attribute {name!r}"
                   f"{did_you_mean(name, known)}")
        problems.append(((*where, "attribute"), message))
    return problems


def conditions_of(spec: ScenarioSpec) -> Iterator[tuple[tuple[str | int, ...], Condition]]:
    """Every condition of the scenario, nested ones included, with its place."""
    return ((where, condition) for where, condition, _ in _all_conditions(spec))


def top_conditions(spec: ScenarioSpec) -> list[Condition]:
    """The scenario's conditions and its branches' (each with what it nests)."""
    found = [spec.conditions] if spec.conditions is not None else []
    return found + [step.condition for step in spec.steps if isinstance(step, BranchStep)]


def _all_conditions(spec: ScenarioSpec) -> Iterator[
        tuple[tuple[str | int, ...], Condition, frozenset[TriggerKind]]]:
    """Every condition of the scenario, nested ones included, with its place and the
    triggers a `trigger` condition there tests: the entry's in the scenario's
    conditions; in a branch, the entry's or one a wait of the scenario waits for."""
    entry = frozenset({spec.entry.event})
    yield from ((where, one, entry) for where, one in
                conditions_under(spec.conditions, ("conditions",)))
    waited = entry | {step.event for step in spec.steps if isinstance(step, WaitForEventStep)}
    for index, step in enumerate(spec.steps):
        if isinstance(step, BranchStep):
            yield from ((where, one, waited) for where, one in
                        conditions_under(step.condition, ("steps", index, step.type, "if")))


def conditions_under(condition: Condition | None, at: tuple[str | int, ...]
                     ) -> Iterator[tuple[tuple[str | int, ...], Condition]]:
    """Each condition under `condition` with its place (the kind, then its field)."""
    if condition is None:
        return
    kind = condition_kind(condition)
    assert kind is not None
    here = (*at, kind, kind)
    yield here, condition
    if isinstance(condition, AllCondition | AnyCondition):
        parts = condition.all if isinstance(condition, AllCondition) else condition.any
        for index, part in enumerate(parts):
            yield from conditions_under(part, (*here, index))
    elif isinstance(condition, NotCondition):
        yield from conditions_under(condition.not_, (*at, kind, "not"))


def _jump_fields(spec: ScenarioSpec, index: int) -> list[tuple[str, str]]:
    """`successors` with the field each comes from (`next` for falling through)."""
    step = spec.steps[index]
    names = (("yes", "no") if isinstance(step, WaitForEventStep) else
             ("then", "else") if isinstance(step, BranchStep) else ("next",))
    return list(zip(names, spec.successors(index), strict=True))


def jumps(step: Step) -> list[tuple[str, str]]:
    """The step's jumps as (field as written, target step id): `yes`/`no` of a wait for
    an event, `then`/`else` of a branch, `next` of the others."""
    if isinstance(step, WaitForEventStep):
        named = [("yes", step.yes), ("no", step.no)]
    elif isinstance(step, BranchStep):
        named = [("then", step.then), ("else", step.otherwise)]
    else:
        named = [("next", step.next)]
    return [(field, target) for field, target in named if target is not None]


def jump_targets(step: Step) -> list[str]:
    return [target for _, target in jumps(step)]
