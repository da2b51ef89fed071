"""The message funnel per scenario, step and variant: how far messages got.

Counts are of messages created in [since, until). Each stage counts the messages that
reached it, whatever happened after (a delivered message was also sent, a clicked one
may not have loaded the open pixel), so the stages read as a funnel; the terminal
statuses (failed, suppressed, expired) and the still waiting (pending, held) are counted
by status; `expired` also counts sends that quiet hours would have held past their deadline,
which made no message (they are in the journey log). FCM gives no delivery receipt, so its
pushes never count as delivered. A message whose order was then cancelled or refunded
in full is not counted as converted (`conversion_reversed_at`).

Transactional messages (requests for consent: the double opt-in email and its reminders)
are not marketing: their rows say `transactional` (a step that changed kind between
versions gets a row of each kind), so marketing figures leave them out by that flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Integer, case, func
from sqlalchemy import select as core_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from cloud.examples import example
from cloud.messages.models import Message, MessageStatus
from cloud.scenarios.models import Journey, JourneyLog
from cloud.scenarios.sending import HELD_PAST_DEADLINE
from cloud.tracking.attribution import CONVERTED

#: (scenario, step, variant): rules outside scenarios have no scenario (None).
FunnelKey = tuple[str | None, str | None, str | None]
#: A funnel key and whether its messages are transactional.
_RowKey = tuple[str | None, str | None, str | None, bool]


class FunnelRow(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"scenario": "cart-reminder", "step": "remind", "variant": "a", "queued": 0, "pending": 2,
         "held": 1, "sent": 180, "delivered": 171, "opened": 64, "clicked": 40, "converted": 31,
         "failed": 3, "suppressed": 9, "expired": 0, "held_out": 20},
    ))

    scenario: str | None
    step: str | None
    variant: str | None
    #: Requests for consent, not marketing: leave these rows out of marketing figures.
    transactional: bool = False
    queued: int
    pending: int
    held: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    converted: int
    failed: int
    suppressed: int
    expired: int
    #: Journeys held out (the control group) in the period: nothing was queued for them,
    #: so they are counted from the scenario engine's journeys, on the scenario's own row.
    held_out: int = 0


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0, type_=Integer)


def _status(status: MessageStatus) -> ColumnElement[bool]:
    return col(Message.status) == status.value


def funnel(
    session: Session,
    *,
    tenant: str,
    since: datetime,
    until: datetime,
    scenario: str | None = None,
) -> list[FunnelRow]:
    """One row per (scenario, step, variant, transactional) with messages in the period,
    and per scenario a (scenario, None, None) marketing row counting the journeys held
    out in it."""
    if until <= since:
        raise ValueError("until must be after since")
    query = (
        core_select(
            col(Message.scenario), col(Message.step), col(Message.variant),
            col(Message.transactional), func.count(),
            _count_if(_status(MessageStatus.PENDING)),
            _count_if(_status(MessageStatus.HELD)),
            _count_if(col(Message.sent_at).is_not(None)),
            _count_if(col(Message.delivered_at).is_not(None)),
            _count_if(col(Message.opened_at).is_not(None)),
            _count_if(col(Message.clicked_at).is_not(None)),
            _count_if(CONVERTED),
            _count_if(_status(MessageStatus.FAILED)),
            _count_if(_status(MessageStatus.SUPPRESSED)),
            _count_if(_status(MessageStatus.EXPIRED)),
        )
        .where(
            col(Message.tenant) == tenant,
            col(Message.created_at) >= since,
            col(Message.created_at) < until,
        )
        .group_by(col(Message.scenario), col(Message.step), col(Message.variant),
                  col(Message.transactional))
    )
    if scenario is not None:
        query = query.where(col(Message.scenario) == scenario)
    rows: dict[_RowKey, FunnelRow] = {}
    for found in session.connection().execute(query).all():
        key: _RowKey = (found[0], found[1], found[2], bool(found[3]))
        rows[key] = FunnelRow(
            scenario=found[0], step=found[1], variant=found[2], transactional=key[3],
            queued=found[4], pending=found[5], held=found[6], sent=found[7],
            delivered=found[8], opened=found[9], clicked=found[10], converted=found[11],
            failed=found[12], suppressed=found[13], expired=found[14],
        )
    held_out = held_out_journeys(session, tenant=tenant, since=since, until=until,
                                 scenario=scenario)
    for (scenario_key, step, variant), count in held_out.items():
        key = (scenario_key, step, variant, False)
        row = rows.get(key) or _empty_row(scenario_key, step, variant)
        rows[key] = row.model_copy(update={"held_out": count})
    unsent = held_past_deadline(session, tenant=tenant, since=since, until=until,
                                scenario=scenario)
    for (scenario_key, step, variant), count in unsent.items():
        key = (scenario_key, step, variant, False)
        row = rows.get(key) or _empty_row(scenario_key, step, variant)
        rows[key] = row.model_copy(update={"expired": row.expired + count})
    return sorted(
        rows.values(),
        key=lambda r: (r.scenario or "", r.step or "", r.variant or "", r.transactional),
    )


def _empty_row(scenario: str | None, step: str | None, variant: str | None) -> FunnelRow:
    return FunnelRow(scenario=scenario, step=step, variant=variant, queued=0, pending=0,
                     held=0, sent=0, delivered=0, opened=0, clicked=0, converted=0, failed=0,
                     suppressed=0, expired=0)


def held_past_deadline(
    session: Session, *, tenant: str, since: datetime, until: datetime,
    scenario: str | None = None,
) -> Mapping[FunnelKey, int]:
    """Sends decided in the period that quiet hours would have held past their deadline:
    no message was made (nor a coupon spent), so the journey log is where they are
    counted, as expired."""
    query = (
        core_select(col(Journey.scenario_key), col(JourneyLog.step), col(Journey.variant),
                    func.count())
        .join(Journey, col(Journey.id) == col(JourneyLog.journey_id))
        .where(
            col(Journey.tenant) == tenant, col(JourneyLog.outcome) == HELD_PAST_DEADLINE,
            col(JourneyLog.at) >= since, col(JourneyLog.at) < until,
        )
        .group_by(col(Journey.scenario_key), col(JourneyLog.step), col(Journey.variant))
    )
    if scenario is not None:
        query = query.where(col(Journey.scenario_key) == scenario)
    return {
        (key, step, variant): int(count)
        for key, step, variant, count in session.connection().execute(query).all()
    }


def held_out_journeys(
    session: Session, *, tenant: str, since: datetime, until: datetime,
    scenario: str | None = None,
) -> Mapping[FunnelKey, int]:
    """Journeys started in the period in each scenario's holdout group (no step, no
    variant: nothing ran for them)."""
    query = (
        core_select(col(Journey.scenario_key), func.count())
        .where(
            col(Journey.tenant) == tenant, col(Journey.holdout),
            col(Journey.started_at) >= since, col(Journey.started_at) < until,
        )
        .group_by(col(Journey.scenario_key))
    )
    if scenario is not None:
        query = query.where(col(Journey.scenario_key) == scenario)
    return {
        (key, None, None): int(count)
        for key, count in session.connection().execute(query).all()
    }
