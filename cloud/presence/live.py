"""Presence as it is now: which devices are in each store and zone, who came in during
the last hour, and the newest events, for the live page and its stream.

"Present now" is defined once, here. A device (a pseudonym) is present in a store when,
at some gateway of the store, its latest event is an enter or a dwell and that event saw
it (`last_seen`) within `PRESENT_TIMEOUT`. An exit ends its presence at that gateway at
once; the timeout ends it when nothing more arrives (a gateway that lost power sends no
exit). A device heard by several gateways of a store counts once there, in the zone of
its most recent event. These are devices, not people: one person may carry two phones,
and a phone with a randomized address may appear under more than one pseudonym.

Every query here reads only the recent part of `presence_event` through the index on
(tenant, last_seen), so its cost follows the events of the last window, not the size of
the table (measured in docs/benchmarks/live-presence.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import case, distinct, func, select
from sqlmodel import Session

from cloud.presence.crud import EVENT_TABLE
from shared.presence import PseudonymScope, Transition

#: How long an enter or dwell keeps a device present without a newer event. A gateway
#: reports a device still in range with a dwell every `dwell_interval_s` (5 minutes by
#: default), so a present device's newest event is at most about that old; twice that
#: lets one dwell be late or lost before the device is dropped.
PRESENT_TIMEOUT = timedelta(minutes=10)
#: "Entered in the last hour": devices whose visit began in this window.
ENTERED_WINDOW = timedelta(hours=1)
#: How far back the stream looks for events to show on connecting, or to replay after a
#: reconnection: older ones are history (the analytics page), not live.
RECENT_WINDOW = timedelta(hours=1)
#: Characters of the pseudonym's hash shown after its key id: enough to tell the devices
#: of one store apart on a screen, too few to look one up elsewhere.
SHORT_PSEUDONYM_HEX = 8

_E = EVENT_TABLE.c


def short_pseudonym(pseudonym: str) -> str:
    """How screens show a pseudonym: its key id and the start of its hash ("k1:3fa9c2d1")."""
    key_id, _, digest = pseudonym.partition(":")
    return f"{key_id}:{digest[:SHORT_PSEUDONYM_HEX]}"


class LiveEvent(BaseModel):
    """One presence event as the live page shows it: the device only by its shortened
    pseudonym."""

    id: int = Field(description="the event's row id; the stream's event id")
    store: str
    zone: str
    gateway: str
    transition: Transition
    device: str = Field(description="the pseudonym, shortened (key id and 8 hex digits)")
    scope: PseudonymScope
    first_seen: datetime
    last_seen: datetime
    dwell_s: float
    received_at: datetime


@dataclass(frozen=True, slots=True)
class ZoneCount:
    store: str
    zone: str
    devices: int


@dataclass(frozen=True, slots=True)
class PresenceNow:
    """Devices present per store and zone, and devices that entered in the last hour per
    store and zone and per store (a device entering two zones counts once in its store)."""

    present: Sequence[ZoneCount]
    entered_by_zone: Sequence[ZoneCount]
    entered_by_store: dict[str, int]


_EVENT_COLUMNS = (
    _E.id, _E.store, _E.zone, _E.gateway, _E.transition, _E.pseudonym, _E.scope,
    _E.first_seen, _E.last_seen, _E.dwell_s, _E.received_at,
)


def _live_event(row: Any) -> LiveEvent:
    return LiveEvent(
        id=row.id, store=row.store, zone=row.zone, gateway=row.gateway,
        transition=Transition(row.transition), device=short_pseudonym(row.pseudonym),
        scope=PseudonymScope(row.scope), first_seen=row.first_seen, last_seen=row.last_seen,
        dwell_s=row.dwell_s, received_at=row.received_at,
    )


def present_counts(session: Session, *, tenant: str, now: datetime) -> list[ZoneCount]:
    """Devices present now, per store and zone (see the module's definition).

    One statement: the latest event per (store, gateway, device) among those seen since
    the timeout (an exit's `last_seen` is never before the enter or dwell it ends, so the
    window holds it whenever it holds them), the devices whose latest one is not an exit,
    one row per device and store (its newest zone), counted.
    """
    cutoff = now - PRESENT_TIMEOUT
    # On equal times the exit comes last: it ends what the dwell before it reported.
    exit_last = case((_E.transition == Transition.EXIT.value, 1), else_=0)
    per_gateway = select(
        _E.store, _E.gateway, _E.pseudonym, _E.zone, _E.transition, _E.last_seen,
        func.row_number().over(
            partition_by=(_E.store, _E.gateway, _E.pseudonym),
            order_by=(_E.last_seen.desc(), exit_last.desc(), _E.id.desc()),
        ).label("newest"),
    ).where(_E.tenant == tenant, _E.last_seen >= cutoff).subquery("per_gateway")
    g = per_gateway.c
    per_store = select(
        g.store, g.zone,
        func.row_number().over(
            partition_by=(g.store, g.pseudonym), order_by=(g.last_seen.desc(), g.gateway),
        ).label("newest"),
    ).where(g.newest == 1, g.transition != Transition.EXIT.value).subquery("per_store")
    s = per_store.c
    query = (
        select(s.store, s.zone, func.count().label("devices"))
        .where(s.newest == 1).group_by(s.store, s.zone).order_by(s.store, s.zone)
    )
    return [ZoneCount(row.store, row.zone, row.devices)
            for row in session.connection().execute(query)]


def entered_counts(
    session: Session, *, tenant: str, now: datetime
) -> tuple[list[ZoneCount], dict[str, int]]:
    """Devices whose visit began (an enter) in the last hour: per store and zone, and per
    store. An enter's `last_seen` is at or after its `first_seen`, so the index on
    `last_seen` finds them all."""
    since = now - ENTERED_WINDOW
    recent = (
        _E.tenant == tenant, _E.last_seen >= since, _E.first_seen >= since,
        _E.transition == Transition.ENTER.value,
    )
    devices = func.count(distinct(_E.pseudonym)).label("devices")
    connection = session.connection()
    by_zone = connection.execute(
        select(_E.store, _E.zone, devices).where(*recent).group_by(_E.store, _E.zone)
    )
    zones = [ZoneCount(row.store, row.zone, row.devices) for row in by_zone]
    by_store = connection.execute(select(_E.store, devices).where(*recent).group_by(_E.store))
    return zones, {row.store: row.devices for row in by_store}


def presence_now(session: Session, *, tenant: str, now: datetime) -> PresenceNow:
    entered_by_zone, entered_by_store = entered_counts(session, tenant=tenant, now=now)
    return PresenceNow(
        present=present_counts(session, tenant=tenant, now=now),
        entered_by_zone=entered_by_zone, entered_by_store=entered_by_store,
    )


def recent_events(
    session: Session, *, tenant: str, now: datetime, limit: int, after_id: int | None = None,
) -> tuple[list[LiveEvent], bool]:
    """The newest events of the tenant seen in `RECENT_WINDOW` (those after `after_id`
    only, when given), newest first, at most `limit`; and whether there were more."""
    query = select(*_EVENT_COLUMNS).where(
        _E.tenant == tenant, _E.last_seen >= now - RECENT_WINDOW,
    )
    if after_id is not None:
        query = query.where(_E.id > after_id)
    rows = session.connection().execute(query.order_by(_E.id.desc()).limit(limit + 1)).all()
    return [_live_event(row) for row in rows[:limit]], len(rows) > limit


def events_after(session: Session, *, tenant: str, after_id: int, limit: int) -> list[LiveEvent]:
    """Events of the tenant stored after row `after_id`, newest first, at most `limit`:
    a range of the primary key, whatever the table's size."""
    query = (
        select(*_EVENT_COLUMNS).where(_E.id > after_id, _E.tenant == tenant)
        .order_by(_E.id.desc()).limit(limit)
    )
    return [_live_event(row) for row in session.connection().execute(query)]


def newest_event_id(session: Session) -> int:
    """The highest row id stored (0 when none): where a new stream's feed starts."""
    found = session.connection().execute(select(func.max(_E.id))).scalar()
    return int(found or 0)
