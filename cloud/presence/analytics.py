"""Footfall: how many devices passed, how many came in, for how long, and who came back.

Computed from stored events at read time, by merging them into visits (across gateways),
per store and day and per zone and day. A device that stayed in range for less than a
minute walked past; longer, it visited. New versus repeat can only be told for stable
pseudonyms, i.e. consenting customers and anyone seen in the last day; visits under daily
pseudonyms are counted as "unknown", which is the privacy rules working as intended.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud.presence.crud import VISIT_GAP, Visit, merge_visits
from cloud.presence.models import PresenceEventRow
from shared.presence import PseudonymScope

#: Under a minute in range is someone walking past the window, not a visitor.
PASSERBY_MAX_DWELL_S = 60.0
#: Dwell histogram bucket upper bounds (seconds); the last bucket is open-ended.
DWELL_BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("<1m", 60), ("1-5m", 300), ("5-15m", 900), ("15-30m", 1800), ("30-60m", 3600),
    (">60m", None),
)
#: A visitor seen in the store within this period before is a repeat visitor.
REPEAT_LOOKBACK = timedelta(days=90)
#: One request covers at most this much time: the computation reads every event in it.
MAX_WINDOW = timedelta(days=31)
_CHUNK = 1000


class FootfallRow(BaseModel):
    store: str
    zone: str | None
    day: date
    devices: int
    visitors: int
    passers_by: int
    capture_rate: float | None
    new_visitors: int
    repeat_visitors: int
    unknown_visitors: int
    median_dwell_s: float | None
    dwell: dict[str, int]


def dwell_bucket(seconds: float) -> str:
    for name, upper in DWELL_BUCKETS:
        if upper is None or seconds < upper:
            return name
    raise AssertionError("unreachable: the last bucket is open-ended")  # pragma: no cover


def _first_seen_before(
    session: Session, *, tenant: str, pseudonyms: Sequence[str], since: datetime
) -> dict[tuple[str, str], datetime]:
    """Earliest sighting per (store, pseudonym) in the lookback before `since`."""
    found: dict[tuple[str, str], datetime] = {}
    for start in range(0, len(pseudonyms), _CHUNK):
        chunk = pseudonyms[start : start + _CHUNK]
        query = (
            select(PresenceEventRow.store, PresenceEventRow.pseudonym,
                   func.min(PresenceEventRow.first_seen))
            .where(
                col(PresenceEventRow.tenant) == tenant,
                col(PresenceEventRow.scope) == PseudonymScope.STABLE.value,
                col(PresenceEventRow.pseudonym).in_(chunk),
                col(PresenceEventRow.first_seen) >= since - REPEAT_LOOKBACK,
                col(PresenceEventRow.first_seen) < since,
            )
            .group_by(col(PresenceEventRow.store), col(PresenceEventRow.pseudonym))
        )
        for store, pseudonym, first in session.exec(query).all():
            found[(store, pseudonym)] = first
    return found


def footfall(
    session: Session, *, tenant: str, since: datetime, until: datetime, store: str | None = None,
    by_zone: bool = False,
) -> list[FootfallRow]:
    """Per store and day (or per store, zone and day) for visits starting in [since, until)."""
    if until <= since:
        raise ValueError("until must be after since")
    if until - since > MAX_WINDOW:
        raise ValueError(f"the window may be at most {MAX_WINDOW.days} days")
    query = select(PresenceEventRow).where(
        col(PresenceEventRow.tenant) == tenant,
        col(PresenceEventRow.first_seen) < until,
        col(PresenceEventRow.last_seen) >= since - VISIT_GAP,
    )
    if store is not None:
        query = query.where(col(PresenceEventRow.store) == store)
    events = list(session.exec(query).all())
    store_visits = [
        v for v in merge_visits(events, by_zone=False) if since <= v.start < until
    ]
    # Repeat: seen in the same store before this visit (in the lookback, or earlier in
    # the window itself).
    stable = sorted({v.pseudonym for v in store_visits if v.stable})
    before = _first_seen_before(session, tenant=tenant, pseudonyms=stable, since=since)
    first_visit: dict[tuple[str, str], datetime] = {}
    for visit in store_visits:
        first_visit.setdefault((visit.store, visit.pseudonym), visit.start)

    def is_repeat(visit: Visit) -> bool:
        key = (visit.store, visit.pseudonym)
        return key in before or visit.start > first_visit[key]

    repeat_store = {id(v) for v in store_visits if v.stable and is_repeat(v)}
    if not by_zone:
        return _rows(store_visits, repeat_store, zone_level=False)
    # A zone visit is a repeat when the store visit it is part of is one.
    by_device: dict[tuple[str, str], list[Visit]] = {}
    for visit in store_visits:
        by_device.setdefault((visit.store, visit.pseudonym), []).append(visit)
    zone_visits = [v for v in merge_visits(events, by_zone=True) if since <= v.start < until]
    repeat_zone = {
        id(zone_visit) for zone_visit in zone_visits
        if any(
            id(visit) in repeat_store and visit.start <= zone_visit.start <= visit.end
            for visit in by_device.get((zone_visit.store, zone_visit.pseudonym), [])
        )
    }
    return _rows(zone_visits, repeat_zone, zone_level=True)


def _rows(visits: list[Visit], repeat: set[int], *, zone_level: bool) -> list[FootfallRow]:
    """Aggregate visits per (store, zone, day); `repeat` holds the ids of repeat visits."""
    groups: dict[tuple[str, str | None, date], list[Visit]] = {}
    for visit in visits:
        groups.setdefault((visit.store, visit.zone, visit.start.date()), []).append(visit)
    rows = []
    for (store, zone, day), members in sorted(
        groups.items(), key=lambda item: (item[0][0], item[0][1] or "", item[0][2])
    ):
        visitors = [v for v in members if v.dwell_s >= PASSERBY_MAX_DWELL_S]
        dwell = {name: 0 for name, _ in DWELL_BUCKETS}
        for visit in visitors:
            dwell[dwell_bucket(visit.dwell_s)] += 1
        known = [v for v in visitors if v.stable]
        repeats = sum(1 for v in known if id(v) in repeat)
        rows.append(FootfallRow(
            store=store, zone=zone if zone_level else None, day=day, devices=len(members),
            visitors=len(visitors), passers_by=len(members) - len(visitors),
            capture_rate=round(len(visitors) / len(members), 4),
            new_visitors=len(known) - repeats, repeat_visitors=repeats,
            unknown_visitors=len(visitors) - len(known),
            median_dwell_s=statistics.median(v.dwell_s for v in visitors) if visitors else None,
            dwell=dwell,
        ))
    return rows
