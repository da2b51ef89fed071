"""Footfall's unit: a visit, with what a chart counts of it, computed from stored events.

One definition serves the raw computation and the roll-ups, so that both give the same
figures for the same events:

- a visit is a device's events in a store (or zone) merged across gateways while they
  overlap or lie within `VISIT_GAP` (`merge_visits`), and belongs to the hour it starts in;
- its events are read with all the context it needs, however the question's window is
  cut: back to `VISIT_GAP` before the window (an earlier event could only join a visit
  that starts before it), and forward for as long as a visit that starts in the window
  may go on;
- it is a repeat when the device (under a stable pseudonym) was seen in the same store in
  the `REPEAT_LOOKBACK` before the visit started; a zone visit is a repeat when the store
  visit it is part of is one. The answer for a visit never depends on the window asked.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

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
#: How much further than needed the events are read at once when a visit may go on past
#: what was read: one more read per visit longer than this, rather than one per gap.
READ_AHEAD = timedelta(hours=1)
#: Pseudonyms per lookback query (bound parameters stay well under every driver's limit).
_CHUNK = 1000


def dwell_bucket(seconds: float) -> str:
    for name, upper in DWELL_BUCKETS:
        if upper is None or seconds < upper:
            return name
    raise AssertionError("unreachable: the last bucket is open-ended")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class CountedVisit:
    """A visit as footfall counts it."""

    store: str
    #: None: the visit to the store as a whole.
    zone: str | None
    start: datetime
    dwell_s: float
    #: False when any of its events was under a daily pseudonym (new or repeat unknown).
    stable: bool
    repeat: bool

    @property
    def visitor(self) -> bool:
        return self.dwell_s >= PASSERBY_MAX_DWELL_S


def _events(
    session: Session, *, tenant: str, store: str | None, since: datetime, until: datetime
) -> list[PresenceEventRow]:
    """Events of a store (or of every store) that a visit in [since, until) may hold."""
    query = select(PresenceEventRow).where(
        col(PresenceEventRow.tenant) == tenant,
        col(PresenceEventRow.first_seen) < until,
        col(PresenceEventRow.last_seen) >= since,
    )
    if store is not None:
        query = query.where(col(PresenceEventRow.store) == store)
    return list(session.exec(query).all())


def complete_events(
    session: Session, *, tenant: str, since: datetime, until: datetime, store: str | None = None
) -> list[PresenceEventRow]:
    """The events from which every store visit reaching into [since, until) comes out
    whole.

    Merging decides whether an event starts a visit by the latest end before it, so an
    event that ends more than `VISIT_GAP` before a visit's start cannot change it:
    reading from `VISIT_GAP` before the window is enough, except for a visit that began
    before it and goes on into it, whose beginning is read too. Forwards, an unread event
    joins a visit if it starts within the gap of the visit's end: reading goes on while a
    visit that starts in the window reaches that close to the end of what was read.
    """
    lower, read_until = since, until + VISIT_GAP + READ_AHEAD
    while True:
        events = _events(session, tenant=tenant, store=store, since=lower - VISIT_GAP,
                         until=read_until)
        visits = merge_visits(events, by_zone=False)
        reach = max((visit.end for visit in visits if visit.start < until), default=None)
        back = min((visit.start for visit in visits
                    if visit.start < lower and visit.end >= since), default=None)
        if reach is not None and reach >= read_until - VISIT_GAP:
            read_until = reach + VISIT_GAP + READ_AHEAD
        elif back is not None:
            lower = back
        else:
            return events


def _stable_sightings(
    session: Session, *, tenant: str, keys: set[tuple[str, str]], since: datetime,
    until: datetime,
) -> dict[tuple[str, str], list[datetime]]:
    """Sorted first sightings per (store, pseudonym) under stable pseudonyms in [since, until)."""
    found: dict[tuple[str, str], list[datetime]] = {}
    pseudonyms = sorted({pseudonym for _, pseudonym in keys})
    for start in range(0, len(pseudonyms), _CHUNK):
        query = select(PresenceEventRow.store, PresenceEventRow.pseudonym,
                       PresenceEventRow.first_seen).where(
            col(PresenceEventRow.tenant) == tenant,
            col(PresenceEventRow.scope) == PseudonymScope.STABLE.value,
            col(PresenceEventRow.pseudonym).in_(pseudonyms[start : start + _CHUNK]),
            col(PresenceEventRow.first_seen) >= since,
            col(PresenceEventRow.first_seen) < until,
            # Implied (an event ends no earlier than it starts): lets PostgreSQL skip the
            # partitions of older days, which are cut by `last_seen`.
            col(PresenceEventRow.last_seen) >= since,
        )
        for store, pseudonym, first_seen in session.exec(query).all():
            if (store, pseudonym) in keys:
                found.setdefault((store, pseudonym), []).append(first_seen)
    for times in found.values():
        times.sort()
    return found


def _repeat_visits(session: Session, *, tenant: str, visits: Sequence[Visit]) -> set[Visit]:
    """The stable store visits whose device was seen in the store in the lookback before."""
    stable = [visit for visit in visits if visit.stable]
    if not stable:
        return set()
    sightings = _stable_sightings(
        session, tenant=tenant, keys={(visit.store, visit.pseudonym) for visit in stable},
        since=min(visit.start for visit in stable) - REPEAT_LOOKBACK,
        until=max(visit.start for visit in stable),
    )

    def seen_before(visit: Visit) -> bool:
        times = sightings.get((visit.store, visit.pseudonym), [])
        at = bisect.bisect_left(times, visit.start - REPEAT_LOOKBACK)
        return at < len(times) and times[at] < visit.start

    return {visit for visit in stable if seen_before(visit)}


def counted_visits(
    session: Session, *, tenant: str, since: datetime, until: datetime, store: str | None = None
) -> list[CountedVisit]:
    """Every store visit and zone visit that starts in [since, until), as footfall counts
    them (the module's docstring says how)."""
    events = complete_events(session, tenant=tenant, store=store, since=since, until=until)
    store_visits = [visit for visit in merge_visits(events, by_zone=False)
                    if visit.start < until]
    repeat = _repeat_visits(session, tenant=tenant, visits=store_visits)
    by_device: dict[tuple[str, str], list[Visit]] = {}
    for visit in store_visits:
        by_device.setdefault((visit.store, visit.pseudonym), []).append(visit)

    def part_of_repeat(zone_visit: Visit) -> bool:
        return any(visit in repeat and visit.start <= zone_visit.start <= visit.end
                   for visit in by_device.get((zone_visit.store, zone_visit.pseudonym), []))

    counted = [
        CountedVisit(store=visit.store, zone=None, start=visit.start, dwell_s=visit.dwell_s,
                     stable=visit.stable, repeat=visit in repeat)
        for visit in store_visits if visit.start >= since
    ]
    counted += [
        CountedVisit(store=visit.store, zone=visit.zone, start=visit.start,
                     dwell_s=visit.dwell_s, stable=visit.stable,
                     repeat=visit.stable and part_of_repeat(visit))
        for visit in merge_visits(events, by_zone=True) if since <= visit.start < until
    ]
    return counted


@dataclass(slots=True)
class Tally:
    """Footfall figures of some visits, as they are added up."""

    devices: int = 0
    visitors: int = 0
    new_visitors: int = 0
    repeat_visitors: int = 0
    unknown_visitors: int = 0
    dwell: dict[str, int] = field(default_factory=lambda: {name: 0 for name, _ in DWELL_BUCKETS})
    visitor_dwells: list[float] = field(default_factory=list)

    @property
    def passers_by(self) -> int:
        return self.devices - self.visitors

    @property
    def capture_rate(self) -> float | None:
        return round(self.visitors / self.devices, 4) if self.devices else None

    @property
    def median_dwell_s(self) -> float | None:
        """Rounded to the millisecond: the roll-ups keep it so (PostgreSQL's and Python's
        medians of the same values may differ in the last bits of a float)."""
        if not self.visitor_dwells:
            return None
        return round(statistics.median(self.visitor_dwells), 3)

    def add(self, visit: CountedVisit) -> None:
        self.devices += 1
        if not visit.visitor:
            return
        self.visitors += 1
        self.dwell[dwell_bucket(visit.dwell_s)] += 1
        self.visitor_dwells.append(visit.dwell_s)
        if not visit.stable:
            self.unknown_visitors += 1
        elif visit.repeat:
            self.repeat_visitors += 1
        else:
            self.new_visitors += 1


Period = datetime | date


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> date:
    return moment.date()


def tally(
    visits: Iterable[CountedVisit], period: Callable[[datetime], Period]
) -> dict[tuple[str, str | None, Period], Tally]:
    """Figures per (store, zone, period of the visit's start); zone None is the store."""
    tallies: dict[tuple[str, str | None, Period], Tally] = {}
    for visit in visits:
        key = (visit.store, visit.zone, period(visit.start))
        tallies.setdefault(key, Tally()).add(visit)
    return tallies
