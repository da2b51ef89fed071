"""Scenario routes: save (a new version), list, switch off, a customer's journeys with what
each step did, and a scenario's report (variants and holdout side by side)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session, col, select

from cloud.api.access import MayReadAnalytics, MayReadConfig, MayReadCustomers, MayWriteScenarios
from cloud.api.audit import Audit
from cloud.api.customers import CustomerDep
from cloud.api.deps import MAX_PAGE, NowDep, OutboundPolicyDep, SessionDep
from cloud.bounds import BoundedText, DbDatetime
from cloud.commerce.models import Order, OrderStatus
from cloud.examples import CUSTOMER_ID, SCENARIO, example
from cloud.messages.models import Message, MessageStatus, Reason
from cloud.messages.reasons import message_reason
from cloud.offers.crud import get_offer, list_offers
from cloud.outbound import OutboundPolicy, OutboundRefusedError, count_refusal
from cloud.scenarios.catalog import (
    deactivate_scenario,
    get_scenario,
    list_scenarios,
    save_scenario,
)
from cloud.scenarios.conditions import SegmentCondition
from cloud.scenarios.funnel import FunnelRow, funnel
from cloud.scenarios.membership import members_among
from cloud.scenarios.models import Journey, JourneyLog, JourneyLogPublic, JourneyPublic, Scenario
from cloud.scenarios.reasons import outcome_reason
from cloud.scenarios.segments import build_book, scenario_segment_problems, versions_decided
from cloud.scenarios.spec import (
    IssueCouponStep,
    OfferChoice,
    Problem,
    ScenarioSpec,
    SendStep,
    WebhookStep,
    save_problems,
)
from cloud.segments.crud import list_segments
from cloud.segments.models import SEGMENT_KEY_PATTERN
from cloud.suggest import did_you_mean
from cloud.templates.crud import MessageTemplate, compiled, list_templates, load_template
from cloud.triggers import Trigger, TriggerKind

router = APIRouter(tags=["scenarios"])

#: How long after entering a scenario an order still counts for its report.
REPORT_WINDOW = timedelta(days=30)


class ScenarioSaved(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"key": "cart-reminder", "version": 3, "active": True, "spec": SCENARIO,
         "updated_at": "2026-12-07T08:30:00Z"},
    ))

    key: str
    version: int
    active: bool
    spec: ScenarioSpec
    updated_at: datetime


class ScenarioDeactivated(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"key": "cart-reminder", "version": 3, "journeys_ended": 12},
    ))

    key: str
    version: int
    journeys_ended: int


class JourneyMessage(BaseModel):
    """A message a journey's step queued, as it stands now: a send the journey log shows
    as queued may since have been suppressed (consent withdrawn), expired or failed."""

    id: int
    step: str | None
    channel: str
    status: MessageStatus
    reason: Reason | None


class JourneyDetail(JourneyPublic):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": 815, "scenario_key": "cart-reminder", "scenario_version": 3,
         "customer_id": CUSTOMER_ID, "entry_kind": "cart.abandoned", "variant": "a",
         "holdout": False, "status": "waiting", "step": "pause",
         "wake_at": "2026-12-07T10:23:00Z", "waiting_for": None,
         "started_at": "2026-12-07T10:08:00Z", "finished_at": None, "reason": None,
         "log": [{"step": "pause", "at": "2026-12-07T10:08:00Z", "outcome": "waiting",
                  "detail": "until 2026-12-07T10:23:00Z"}]},
    ))

    log: list[JourneyLogPublic]
    messages: list[JourneyMessage] = []


class SegmentDecided(BaseModel):
    """How many journeys of a report's group a version of a segment decided: it was in
    the conditions they started by, or in a branch they went through."""

    segment: str
    version: int
    journeys: int


class ReportRow(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"group": "a", "journeys": 240, "converted": 31, "conversion_rate": 0.129,
         "statuses": {"done": 200, "waiting": 40},
         "segments": [{"segment": "washer-buyers-30d", "version": 2, "journeys": 150},
                      {"segment": "washer-buyers-30d", "version": 3, "journeys": 90}]},
    ))

    group: str
    journeys: int
    converted: int
    conversion_rate: float
    statuses: dict[str, int]
    #: Per segment version, the journeys it decided (`GET .../segments/{key}/versions`
    #: shows each version's definition).
    segments: list[SegmentDecided] = []


def _public(row: Scenario) -> ScenarioSaved:
    return ScenarioSaved(
        key=row.key, version=row.version, active=row.active,
        spec=ScenarioSpec.model_validate(row.spec), updated_at=row.updated_at,
    )


def missing_references(session: Session, *, tenant: str, spec: ScenarioSpec) -> list[Problem]:
    """Templates, offers and segments a scenario names that do not exist (or a scenario
    too large with its segments expanded): refused at save time, not discovered when the
    first customer should have got the message. Each problem is placed at the step and
    field naming the missing thing."""
    problems: list[Problem] = scenario_segment_problems(
        spec, build_book(list_segments(session, tenant=tenant, lock="share")))

    def template(where: tuple[str | int, ...], key: str, channels: Sequence[str]) -> None:
        for channel in channels:
            if load_template(session, tenant=tenant, key=key, channel=channel,
                             locale=None) is None:
                others = {row.key for row in list_templates(session, tenant=tenant)
                          if row.channel == channel}
                problems.append((where, f"template {key!r} has no {channel} version"
                                        f"{did_you_mean(key, others)}"))

    def offer(where: tuple[str | int, ...], choice: OfferChoice | None) -> None:
        if choice is not None and choice.key is not None and get_offer(
            session, tenant=tenant, key=choice.key
        ) is None:
            others = {row.key for row in list_offers(session, tenant=tenant, limit=MAX_PAGE)}
            problems.append(((*where, "key"), f"offer {choice.key!r} does not exist"
                                              f"{did_you_mean(choice.key, others)}"))

    for index, step in enumerate(spec.steps):
        at: tuple[str | int, ...] = ("steps", index, step.type)
        if isinstance(step, SendStep):
            template((*at, "template"), step.template, step.channels)
            offer((*at, "offer"), step.offer)
            for name, override in sorted(step.variants.items()):
                if override.template is not None:
                    template((*at, "variants", name, "template"), override.template,
                             step.channels)
                offer((*at, "variants", name, "offer"), override.offer)
        elif isinstance(step, IssueCouponStep):
            offer((*at, "offer"), step.offer)
    return problems


def unsupplied_fields(session: Session, *, tenant: str, spec: ScenarioSpec) -> list[Problem]:
    """Send steps (and their variants) whose template, in some channel and language, uses
    a field the send cannot fill (a coupon's code with no coupon in the step): today's
    save, not every customer's send, is where that should be found."""
    problems: list[Problem] = []
    versions_of: dict[str, list[MessageTemplate]] = defaultdict(list)
    for row in list_templates(session, tenant=tenant):  # once, not once per send
        versions_of[row.key].append(row)
    for index, step in enumerate(spec.steps):
        if not isinstance(step, SendStep):
            continue
        at: tuple[str | int, ...] = ("steps", index, step.type)
        sends = [((*at, "template"), step.template, step.offer)] + [
            ((*at, "variants", name, "template"), override.template or step.template,
             override.offer or step.offer)
            for name, override in sorted(step.variants.items())]
        for where, key, offer in sends:
            missing = spec.unsupplied(index, offer)
            versions = [row for row in versions_of[key] if row.channel in step.channels]
            problems.extend(
                (where, f"template {key!r} ({row.channel}, {row.locale}) uses {field}, which "
                        f"step {step.id!r} cannot fill: {missing[field.split('.')[0]]}")
                for row in versions
                for field in sorted(compiled(row).fields)
                if field.split(".")[0] in missing
            )
    return problems


def refused_webhooks(policy: OutboundPolicy, *, tenant: str, spec: ScenarioSpec
                     ) -> list[Problem]:
    """Webhook steps whose URL the outbound rules refuse (`cloud.outbound`): a private,
    loopback or link-local target in any spelling, a local name, plain http, credentials.
    Refused at save time, at the step's `url`, and counted; the delivery worker checks
    again at each attempt, after resolving the name."""
    problems: list[Problem] = []
    for index, step in enumerate(spec.steps):
        if not isinstance(step, WebhookStep):
            continue
        try:
            policy.check_url(str(step.url))
        except OutboundRefusedError as refusal:
            count_refusal(refusal, client="webhook", stage="save", tenant=tenant)
            problems.append((("steps", index, step.type, "url"),
                             f"refused ({refusal.rule}): {refusal.reason}"))
    return problems


def unprocessable(problems: Sequence[Problem]) -> HTTPException:
    """422 in the shape of a validation error: each problem at its place in the body, so
    a client shows it where it belongs."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
        {"loc": ["body", *map(str, loc)], "msg": message, "type": "value_error"}
        for loc, message in problems
    ])


@router.put("/scenarios/{key}", response_model=ScenarioSaved)
def put_scenario(
    caller: MayWriteScenarios, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    key: str, spec: ScenarioSpec, policy: OutboundPolicyDep,
) -> ScenarioSaved:
    """Save a scenario (a new version when it exists) and switch it on. 422 for a
    template or offer that does not exist, a template using a field its send cannot fill
    (a coupon code with no coupon), and for a webhook URL the outbound rules
    refuse (`detail[].loc` ends in the step's "url", `msg` starts with the rule)."""
    if spec.key != key:
        raise unprocessable([(("key",), f"the body's key must be {key!r}, as in the path")])
    problems = [*save_problems(spec), *refused_webhooks(policy, tenant=tenant, spec=spec),
                *missing_references(session, tenant=tenant, spec=spec),
                *unsupplied_fields(session, tenant=tenant, spec=spec)]
    if problems:
        raise unprocessable(problems)
    found = get_scenario(session, tenant=tenant, key=key)
    before = _public(found) if found is not None else None
    row = save_scenario(session, tenant=tenant, spec=spec, now=now)
    after = _public(row)
    audit.record("scenario.put", f"scenario:{key}", before=before, after=after)
    session.commit()
    return after


@router.get("/scenarios", response_model=list[ScenarioSaved])
def get_scenarios(
    caller: MayReadConfig, session: SessionDep, tenant: str
) -> list[ScenarioSaved]:
    return [_public(row) for row in list_scenarios(session, tenant=tenant)]


def _scenario(session: Session, tenant: str, key: str) -> Scenario:
    row = get_scenario(session, tenant=tenant, key=key)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"scenario {key!r} not found")
    return row


@router.get("/scenarios/{key}", response_model=ScenarioSaved)
def get_one_scenario(
    caller: MayReadConfig, session: SessionDep, tenant: str, key: str
) -> ScenarioSaved:
    return _public(_scenario(session, tenant, key))


@router.delete("/scenarios/{key}", response_model=ScenarioDeactivated)
def switch_off(
    caller: MayWriteScenarios, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    key: str,
) -> ScenarioDeactivated:
    """Switch a scenario off: no new journeys; running ones end. Kept for its history."""
    row = _scenario(session, tenant, key)
    before = _public(row)
    ended = deactivate_scenario(session, scenario=row, now=now)
    audit.record("scenario.deactivate", f"scenario:{key}", before=before, after=_public(row))
    session.commit()
    return ScenarioDeactivated(key=row.key, version=row.version, journeys_ended=ended)


@router.get("/customers/{customer_id}/journeys", response_model=list[JourneyDetail])
def customer_journeys(
    caller: MayReadCustomers, session: SessionDep, customer: CustomerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[JourneyDetail]:
    """The customer's journeys, newest first, each with what every step did and why."""
    journeys = session.exec(
        select(Journey).where(Journey.customer_id == customer.id)
        .order_by(col(Journey.id).desc()).limit(limit)
    ).all()
    ids = [journey.id for journey in journeys]
    logs: dict[int, list[JourneyLogPublic]] = {}
    sent: dict[int, list[JourneyMessage]] = {}
    if journeys:
        for entry in session.exec(
            select(JourneyLog).where(col(JourneyLog.journey_id).in_(ids))
            .order_by(col(JourneyLog.id))
        ).all():
            logs.setdefault(entry.journey_id, []).append(JourneyLogPublic.model_validate(
                entry, update={"reason": outcome_reason(entry.outcome, entry.detail)}))
        for message in session.exec(
            select(Message).where(col(Message.journey_id).in_(ids),
                                  Message.customer_id == customer.id)
            .order_by(col(Message.id))
        ).all():
            assert message.id is not None
            assert message.journey_id is not None
            sent.setdefault(message.journey_id, []).append(JourneyMessage(
                id=message.id, step=message.step, channel=message.channel,
                status=message.status, reason=message_reason(message)))
    return [
        JourneyDetail.model_validate(journey, update={
            "log": logs.get(journey.id or 0, []), "messages": sent.get(journey.id or 0, []),
            "customer_id": customer.public_id})
        for journey in journeys
    ]


@router.get("/scenarios/{key}/report", response_model=list[ReportRow])
def scenario_report(
    caller: MayReadAnalytics, session: SessionDep, now: NowDep, tenant: str, key: str,
    segment: Annotated[str | None, Query(
        pattern=SEGMENT_KEY_PATTERN,
        description="only the journeys of customers in this segment now")] = None,
) -> list[ReportRow]:
    """Journeys per variant and for the holdout group, with the share of customers who
    ordered within 30 days of entering (orders since cancelled or refunded in full do
    not count): the holdout row is what happens without the scenario. Each row says how
    many journeys each segment version decided. With `segment`, only the journeys of the
    segment's members as it stands now (422 for a segment not in use)."""
    _scenario(session, tenant, key)
    journeys = session.exec(
        select(Journey).where(Journey.tenant == tenant, Journey.scenario_key == key)
    ).all()
    if segment is not None:
        book = build_book(list_segments(session, tenant=tenant))
        if segment not in book:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"segment {segment!r} does not exist"
                                f"{did_you_mean(segment, book)}")
        members = members_among(
            session, customer_ids=(journey.customer_id for journey in journeys),
            condition=SegmentCondition(segment=segment), segments=book, now=now)
        journeys = [journey for journey in journeys if journey.customer_id in members]
    return report_rows(session, journeys)


def report_rows(session: Session, journeys: Sequence[Journey]) -> list[ReportRow]:
    """Per group, the journeys whose customer ordered within `REPORT_WINDOW` of
    entering; an order since cancelled or refunded in full sold nothing, and does not
    count."""
    orders: dict[int, list[datetime]] = {}
    customer_ids = sorted({journey.customer_id for journey in journeys})
    if customer_ids:
        undone = set(session.exec(
            select(Order.customer_id, Order.order_id).where(
                col(Order.customer_id).in_(customer_ids),
                col(Order.status) != OrderStatus.PLACED.value,
            )
        ).all())
        for customer_id, at, attributes in session.exec(
            select(Trigger.customer_id, Trigger.occurred_at, Trigger.attributes).where(
                col(Trigger.customer_id).in_(customer_ids),
                Trigger.kind == TriggerKind.ORDER_CREATED.value,
            )
        ).all():
            if (customer_id, (attributes or {}).get("order_id")) not in undone:
                orders.setdefault(customer_id, []).append(at)
    groups: dict[str, list[Journey]] = {}
    for journey in journeys:
        group = "holdout" if journey.holdout else (journey.variant or "all")
        groups.setdefault(group, []).append(journey)
    rows = []
    for group, members in sorted(groups.items()):
        converted = sum(
            any(j.started_at <= at <= j.started_at + REPORT_WINDOW
                for at in orders.get(j.customer_id, []))
            for j in members
        )
        rows.append(ReportRow(
            group=group, journeys=len(members), converted=converted,
            conversion_rate=round(converted / len(members), 4),
            statuses=dict(Counter(str(j.status) for j in members)),
            segments=[SegmentDecided(segment=segment, version=version, journeys=count)
                      for (segment, version), count in
                      versions_decided(j.context for j in members).items()],
        ))
    return rows


@router.get("/analytics/funnel", response_model=list[FunnelRow])
def funnel_report(
    caller: MayReadAnalytics, session: SessionDep, tenant: str,
    since: Annotated[DbDatetime, Query(description="messages queued at or after")],
    until: Annotated[DbDatetime, Query(description="messages queued before")],
    scenario: Annotated[BoundedText | None, Query(max_length=64)] = None,
) -> list[FunnelRow]:
    """Per scenario, step and variant: queued, sent, delivered, opened, clicked,
    converted, failed, suppressed, expired, still pending or held."""
    try:
        return funnel(session, tenant=tenant, since=since, until=until, scenario=scenario)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
