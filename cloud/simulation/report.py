"""What a dry run reports, read back from its scratch database: entries, exits by reason,
holds, caps and suppressions, sends per channel and variant, coupons, webhooks and
loyalty credit, expected opens and conversions from the rates the tenant has observed,
and a sample of journeys to read step by step."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Engine, case, func, select
from sqlmodel import Session

from cloud.offers.models import Offer
from cloud.scenarios.models import JourneyLog
from cloud.scenarios.reasons import OUTCOME_TEXTS, outcome_reason
from cloud.simulation.scratch import (
    COUPON,
    CUSTOMER,
    EARLIER,
    JOURNEY,
    LOYALTY,
    MESSAGE,
    Timelines,
)
from cloud.webhooks.outbound import OutboundWebhook

JOURNEY_LOG = JourneyLog.__table__  # type: ignore[attr-defined]
OFFER = Offer.__table__  # type: ignore[attr-defined]
WEBHOOK = OutboundWebhook.__table__  # type: ignore[attr-defined]
#: How far back observed rates are read: long enough for a few thousand sends of a small
#: shop, recent enough to be about today's customers.
RATE_WINDOW = timedelta(days=90)
#: Below this many sends of the scenario itself on a channel, its own rates are noise and
#: the tenant's rates on the channel stand in.
OWN_RATE_MINIMUM = 50
#: Outcomes reported under their own heading rather than as suppressions.
_NOT_SUPPRESSIONS = frozenset({"held", "held_out", "capped", "held_past_deadline"})
SUPPRESSIONS = frozenset(OUTCOME_TEXTS) - _NOT_SUPPRESSIONS


class Sends(BaseModel):
    channel: str
    variant: str | None = Field(description="the A/B arm; null without variants")
    sends: int = Field(description="messages queued (those held for quiet hours included)")
    held: int = Field(description="of them, held for quiet hours first")


class ExpectedOnChannel(BaseModel):
    channel: str
    sends: int
    basis: str = Field(description="whose observed rates: `scenario` (its own sends in "
                       "the 90 days before the period's end), `tenant` (all the tenant's "
                       "marketing sends on the channel), or `none` (no sends to learn from)")
    basis_sends: int = Field(description="how many sends the rates come from")
    open_rate: float | None
    conversion_rate: float | None
    expected_opens: float | None
    expected_conversions: float | None


class SampleStep(BaseModel):
    step: str
    at: datetime
    outcome: str
    detail: str | None
    reason: str | None


class SampleJourney(BaseModel):
    customer_id: str = Field(description="the customer's public id")
    entry_kind: str
    entered_at: datetime | None
    variant: str | None
    holdout: bool
    status: str
    reason: str | None
    steps: list[SampleStep]


class SimulationReport(BaseModel):
    """What the scenario would have done over the period; nothing of it was sent."""

    triggers: int = Field(description="recorded triggers the scenario reacts to, replayed")
    rounds_s: float = Field(description="wall time the replay took, in seconds")
    entries: int = Field(description="journeys started (holdout excluded)")
    held_out: int
    entries_by_variant: dict[str, int]
    exits: dict[str, int] = Field(description="how journeys ended, by reason (`completed`, "
                                  "`exit:<trigger>`...), and `open` for those still running "
                                  "at the period's end")
    outcomes: dict[str, int] = Field(description="every step outcome, counted")
    holds: int = Field(description="sends held for quiet hours")
    held_past_deadline: int = Field(description="sends quiet hours would have held past "
                                    "their deadline (not made; counted as expired)")
    capped: int
    suppressed: dict[str, int] = Field(description="sends not made, by reason (consent, "
                                       "address, offer, template...)")
    sends: list[Sends]
    coupons_issued: int
    coupons_by_offer: dict[str, int]
    webhooks: int
    loyalty_credit: dict[str, Decimal] = Field(description="credit granted, per currency")
    expected: list[ExpectedOnChannel]
    expected_conversions: float | None = Field(description="the sum over channels with "
                                               "rates to go by")
    sample: list[SampleJourney]


def build_report(
    live: Session, scratch: Engine, *, tenant: str, scenario_key: str, until: datetime,
    timelines: Timelines, elapsed_s: float, sample_size: int, seed: int,
) -> SimulationReport:
    with Session(scratch) as session:
        journeys = session.execute(
            select(JOURNEY.c.id, JOURNEY.c.variant, JOURNEY.c.holdout, JOURNEY.c.status,
                   JOURNEY.c.reason).where(_own_journeys(scenario_key))
        ).all()
        ids = [row.id for row in journeys]
        outcomes = Counter(dict(session.execute(
            select(JOURNEY_LOG.c.outcome, func.count())
            .where(JOURNEY_LOG.c.journey_id.in_(
                select(JOURNEY.c.id).where(_own_journeys(scenario_key))))
            .group_by(JOURNEY_LOG.c.outcome)
        ).all()))
        sends = _sends(session, scenario_key)
        coupons = _coupons(session, scenario_key)
        webhooks = session.execute(
            select(func.count()).select_from(WEBHOOK)
        ).scalar() or 0
        credit = _credit(session, scenario_key)
        sample = _sample(session, ids, sample_size=sample_size, seed=seed)
    treated = [row for row in journeys if not row.holdout]
    exits = Counter(
        "open" if row.status in ("running", "waiting") else (row.reason or row.status)
        for row in treated
    )
    return SimulationReport(
        triggers=len(timelines.events), rounds_s=round(elapsed_s, 3),
        entries=len(treated), held_out=len(journeys) - len(treated),
        entries_by_variant=dict(Counter(row.variant or "-" for row in treated)),
        exits=dict(exits), outcomes=dict(outcomes),
        holds=outcomes["held"], held_past_deadline=outcomes["held_past_deadline"],
        capped=outcomes["capped"],
        suppressed={name: count for name, count in outcomes.items() if name in SUPPRESSIONS},
        sends=sends, coupons_issued=sum(coupons.values()), coupons_by_offer=coupons,
        webhooks=int(webhooks), loyalty_credit=credit,
        expected=(expected := _expected(live, tenant=tenant, scenario_key=scenario_key,
                                        until=until, sends=sends)),
        expected_conversions=_total(expected),
        sample=sample,
    )


def _sends(session: Session, scenario_key: str) -> list[Sends]:
    held = case((MESSAGE.c.not_before > MESSAGE.c.created_at, 1), else_=0)
    rows = session.execute(
        select(MESSAGE.c.channel, MESSAGE.c.variant, func.count(), func.sum(held))
        .where(MESSAGE.c.scenario == scenario_key, MESSAGE.c.journey_id.is_not(None))
        .group_by(MESSAGE.c.channel, MESSAGE.c.variant)
        .order_by(MESSAGE.c.channel, MESSAGE.c.variant)
    ).all()
    return [Sends(channel=str(channel), variant=variant, sends=int(count), held=int(held or 0))
            for channel, variant, count, held in rows]


def _own_journeys(scenario_key: str) -> ColumnElement[bool]:
    """The dry run's journeys: the scenario's, but those copied from before the period."""
    return (JOURNEY.c.scenario_key == scenario_key) & (
        JOURNEY.c.reason.is_(None) | (JOURNEY.c.reason != EARLIER))


def _coupons(session: Session, scenario_key: str) -> dict[str, int]:
    """Coupons the dry run's journeys issued, per offer key (their idempotency keys
    begin with the journey: `j<id>:<step>`)."""
    own = {f"j{journey_id}" for journey_id in session.execute(
        select(JOURNEY.c.id).where(_own_journeys(scenario_key))).scalars()}
    counted: Counter[str] = Counter()
    for key, offer in session.execute(
        select(COUPON.c.idempotency_key, OFFER.c.key).join(OFFER, OFFER.c.id == COUPON.c.offer_id)
    ):
        if str(key or "").split(":", 1)[0] in own:
            counted[offer] += 1
    return dict(counted)


def _credit(session: Session, scenario_key: str) -> dict[str, Decimal]:
    """Credit the dry run's journeys granted, less what cancelled orders took back."""
    granted = select(LOYALTY.c.id).where(
        LOYALTY.c.reason.like(f"scenario {scenario_key} step %"))
    credit: dict[str, Decimal] = defaultdict(Decimal)
    for amount, currency in session.execute(
        select(LOYALTY.c.amount, LOYALTY.c.currency)
        .where(LOYALTY.c.id.in_(granted) | LOYALTY.c.reverses_id.in_(granted))
    ):
        credit[currency] += Decimal(str(amount))
    return dict(credit)


def _expected(
    live: Session, *, tenant: str, scenario_key: str, until: datetime, sends: list[Sends]
) -> list[ExpectedOnChannel]:
    per_channel: Counter[str] = Counter()
    for row in sends:
        per_channel[row.channel] += row.sends
    found = []
    for channel, count in sorted(per_channel.items()):
        basis, sent, opened, converted = _observed(live, tenant=tenant, channel=channel,
                                                   scenario_key=scenario_key, until=until)
        open_rate = opened / sent if sent else None
        conversion_rate = converted / sent if sent else None
        found.append(ExpectedOnChannel(
            channel=channel, sends=count, basis=basis, basis_sends=sent,
            open_rate=open_rate, conversion_rate=conversion_rate,
            expected_opens=None if open_rate is None else round(count * open_rate, 2),
            expected_conversions=(None if conversion_rate is None
                                  else round(count * conversion_rate, 2)),
        ))
    return found


def _observed(
    live: Session, *, tenant: str, channel: str, scenario_key: str, until: datetime
) -> tuple[str, int, int, int]:
    """(basis, sent, opened, converted) over `RATE_WINDOW`: the scenario's own sends when
    it has enough, else the tenant's on the channel."""
    base = (MESSAGE.c.tenant == tenant) & (MESSAGE.c.channel == channel) & (
        MESSAGE.c.transactional.is_(False)) & MESSAGE.c.sent_at.is_not(None) & (
        MESSAGE.c.sent_at >= until - RATE_WINDOW) & (MESSAGE.c.sent_at < until)
    for basis, where in (("scenario", base & (MESSAGE.c.scenario == scenario_key)),
                         ("tenant", base)):
        sent, opened, converted = live.execute(
            select(func.count(), func.count(MESSAGE.c.opened_at),
                   func.count(MESSAGE.c.converted_at)).where(where)
        ).one()
        if basis == "tenant" or sent >= OWN_RATE_MINIMUM:
            return (basis if sent else "none"), int(sent), int(opened), int(converted)
    raise AssertionError("unreachable")


def _total(expected: list[ExpectedOnChannel]) -> float | None:
    known = [row.expected_conversions for row in expected
             if row.expected_conversions is not None]
    return round(sum(known), 2) if known else None


def _sample(
    session: Session, ids: list[int], *, sample_size: int, seed: int
) -> list[SampleJourney]:
    chosen = sorted(random.Random(seed).sample(sorted(ids), min(sample_size, len(ids))))
    if not chosen:
        return []
    steps: dict[int, list[SampleStep]] = defaultdict(list)
    for row in session.execute(
        select(JOURNEY_LOG).where(JOURNEY_LOG.c.journey_id.in_(chosen))
        .order_by(JOURNEY_LOG.c.journey_id, JOURNEY_LOG.c.id)
    ).mappings():
        steps[row["journey_id"]].append(SampleStep(
            step=row["step"], at=row["at"], outcome=row["outcome"], detail=row["detail"],
            reason=outcome_reason(row["outcome"], row["detail"]),
        ))
    found = []
    for row in session.execute(
        select(JOURNEY, CUSTOMER.c.public_id)
        .join(CUSTOMER, CUSTOMER.c.id == JOURNEY.c.customer_id)
        .where(JOURNEY.c.id.in_(chosen)).order_by(JOURNEY.c.id)
    ).mappings():
        entered = (row["context"] or {}).get("entered_at")
        found.append(SampleJourney(
            customer_id=row["public_id"], entry_kind=row["entry_kind"],
            entered_at=datetime.fromisoformat(entered) if entered else None,
            variant=row["variant"], holdout=row["holdout"], status=row["status"],
            reason=row["reason"], steps=steps.get(row["id"], []),
        ))
    return found
