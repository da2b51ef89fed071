"""Keeping footfall roll-ups (`FootfallHour`, `FootfallDay`) equal to what the stored
events say, as events arrive, arrive late, arrive twice or are rewritten.

Whatever writes events marks the hours of the stores whose visits they may change
(`mark_events`): ingest for the events it stored (a replay stores nothing, so marks
nothing), retention and erasure for the events whose pseudonym they replaced. A worker
step (`refresh_dirty`) takes marked hours, rebuilds the whole UTC days they fall in from
the events (`rebuild_store_days`: a day's median needs all of its visits; one store's day
is a few thousand events), and deletes the marks, in one transaction per batch. Two
workers take different marks (`SKIP LOCKED`) and rebuild a store one at a time (an
advisory lock per store on PostgreSQL; SQLite has one writer anyway).

`rebuild` does a tenant's range at once, for a backfill after an upgrade: in SQL on
PostgreSQL (`cloud.presence.rollup_sql`), store by store through the same Python as the
worker elsewhere.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, Table, delete, func, text
from sqlmodel import Session, SQLModel, col, select

from cloud.db import dialect_insert, session_scope
from cloud.leases import take
from cloud.metrics import FOOTFALL_ROLLUP_HOURS, FOOTFALL_ROLLUP_LAG_SECONDS
from cloud.presence.crud import VISIT_GAP, merge_visits
from cloud.presence.models import (
    WHOLE_STORE,
    FootfallDay,
    FootfallDirtyHour,
    FootfallHour,
    PresenceEventRow,
)
from cloud.presence.visits import (
    DWELL_BUCKETS,
    REPEAT_LOOKBACK,
    Tally,
    complete_events,
    counted_visits,
    day_of,
    hour_of,
    tally,
)
from shared.presence import PseudonymScope

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: Column of each dwell bucket, in `DWELL_BUCKETS` order.
DWELL_COLUMNS: dict[str, str] = dict(zip(
    (name for name, _ in DWELL_BUCKETS),
    ("dwell_under_1m", "dwell_1_5m", "dwell_5_15m", "dwell_15_30m", "dwell_30_60m",
     "dwell_over_60m"),
    strict=True,
))
DIRTY_TABLE: Table = SQLModel.metadata.tables[FootfallDirtyHour.__tablename__]
HOUR_TABLE: Table = SQLModel.metadata.tables[FootfallHour.__tablename__]
DAY_TABLE: Table = SQLModel.metadata.tables[FootfallDay.__tablename__]


@dataclass(frozen=True, slots=True)
class EventSpan:
    """What marking needs of a stored (or rewritten) event."""

    tenant: str
    store: str
    pseudonym: str
    stable: bool
    first_seen: datetime
    last_seen: datetime


def span_of(row: PresenceEventRow) -> EventSpan:
    return EventSpan(
        tenant=row.tenant, store=row.store, pseudonym=row.pseudonym,
        stable=row.scope == PseudonymScope.STABLE, first_seen=row.first_seen,
        last_seen=row.last_seen,
    )


def hours_between(first: datetime, last: datetime) -> list[datetime]:
    """The hours from the one holding `first` to the one holding `last`."""
    hours = []
    hour = hour_of(first.astimezone(UTC))
    while hour <= last:
        hours.append(hour)
        hour += HOUR
    return hours


def _later_sightings(
    session: Session, *, tenant: str, spans: Sequence[EventSpan]
) -> set[tuple[str, datetime]]:
    """(store, hour) of the stable sightings whose visit an event of `spans` may make a
    repeat (or no longer one): the same device in the same store, in the lookback after."""
    stable = [span for span in spans if span.stable]
    if not stable:
        return set()
    starts: dict[tuple[str, str], datetime] = {}
    for span in stable:
        key = (span.store, span.pseudonym)
        starts[key] = min(starts.get(key, span.first_seen), span.first_seen)
    found: set[tuple[str, datetime]] = set()
    pseudonyms = sorted({span.pseudonym for span in stable})
    for offset in range(0, len(pseudonyms), 1000):
        query = select(PresenceEventRow.store, PresenceEventRow.pseudonym,
                       PresenceEventRow.first_seen).where(
            col(PresenceEventRow.tenant) == tenant,
            col(PresenceEventRow.pseudonym).in_(pseudonyms[offset : offset + 1000]),
            col(PresenceEventRow.first_seen) > min(starts.values()),
            col(PresenceEventRow.first_seen) <= max(starts.values()) + REPEAT_LOOKBACK,
            # Implied by the line above (an event ends no earlier than it starts); said
            # so that PostgreSQL skips the partitions of older days (by `last_seen`).
            col(PresenceEventRow.last_seen) > min(starts.values()),
        )
        for store, pseudonym, first_seen in session.exec(query).all():
            start = starts.get((store, pseudonym))
            if start is not None and start < first_seen <= start + REPEAT_LOOKBACK:
                found.add((store, hour_of(first_seen)))
    return found


def mark_events(session: Session, *, spans: Iterable[EventSpan], now: datetime) -> int:
    """Mark the hours whose visits stored or rewritten events may change: from `VISIT_GAP`
    before each event to `VISIT_GAP` after it (the visits it joins or splits; one that
    began earlier is found when its day is rebuilt), and the hours of the device's later
    sightings in the lookback (their repeat status). Returns the hours marked."""
    by_tenant: dict[str, list[EventSpan]] = {}
    for span in spans:
        by_tenant.setdefault(span.tenant, []).append(span)
    marks: set[tuple[str, str, datetime]] = set()
    for tenant, tenant_spans in by_tenant.items():
        for span in tenant_spans:
            for hour in hours_between(span.first_seen - VISIT_GAP, span.last_seen + VISIT_GAP):
                marks.add((tenant, span.store, hour))
        for store, hour in _later_sightings(session, tenant=tenant, spans=tenant_spans):
            marks.add((tenant, store, hour))
    if not marks:
        return 0
    rows = [{"tenant": tenant, "store": store, "hour": hour, "marked_at": now}
            for tenant, store, hour in sorted(marks)]
    insert = dialect_insert(session, DIRTY_TABLE)
    # DO UPDATE (to the same value) rather than DO NOTHING: it locks an existing mark
    # until this transaction commits, so a worker cannot take it and rebuild the hour
    # without the events this transaction is storing.
    statement = insert.on_conflict_do_update(
        index_elements=["tenant", "store", "hour"],
        set_={"marked_at": DIRTY_TABLE.c.marked_at},
    )
    session.connection().execute(statement, rows)
    return len(rows)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _runs(days: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive days as [first, last] runs."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + DAY == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _widen_back(session: Session, *, tenant: str, store: str, since: datetime,
                until: datetime) -> datetime:
    """`since`, moved back to the day of any visit that began earlier and goes on into
    [since, until) with events there: the events that made the day dirty may have
    changed that visit too."""
    while True:
        events = complete_events(session, tenant=tenant, store=store, since=since, until=until)
        crossing = [visit for visit in merge_visits(events, by_zone=False)
                    if visit.start < since <= visit.end]
        if not crossing:
            return since
        starts_in_range: dict[str, list[datetime]] = {}
        for event in events:
            if event.first_seen >= since:
                starts_in_range.setdefault(event.pseudonym, []).append(event.first_seen)
        earliest = min(
            (visit.start for visit in crossing
             if any(start <= visit.end for start in starts_in_range.get(visit.pseudonym, []))),
            default=None,
        )
        if earliest is None:
            return since
        since = _day_start(day_of(earliest))


def _counts(figures: Tally) -> dict[str, Any]:
    values: dict[str, Any] = {
        "devices": figures.devices, "visitors": figures.visitors,
        "passers_by": figures.passers_by, "new_visitors": figures.new_visitors,
        "repeat_visitors": figures.repeat_visitors,
        "unknown_visitors": figures.unknown_visitors,
    }
    for name, column in DWELL_COLUMNS.items():
        values[column] = figures.dwell[name]
    return values


def rebuild_store_days(session: Session, *, tenant: str, store: str,
                       days: Iterable[date]) -> int:
    """Replace the roll-ups of `days` of a store (and of earlier days whose visits go on
    into them) with what the events say; returns the days rebuilt."""
    rebuilt = 0
    for first, last in _runs(days):
        until = _day_start(last) + DAY
        since = _widen_back(session, tenant=tenant, store=store, since=_day_start(first),
                            until=until)
        visits = counted_visits(session, tenant=tenant, store=store, since=since, until=until)
        _replace(session, tenant=tenant, store=store, since=since, until=until,
                 hours=tally(visits, hour_of), days=tally(visits, day_of))
        rebuilt += (until - since).days
    return rebuilt


def _replace(
    session: Session, *, tenant: str, store: str, since: datetime, until: datetime,
    hours: dict[Any, Tally], days: dict[Any, Tally],
) -> None:
    connection = session.connection()
    connection.execute(delete(HOUR_TABLE).where(
        HOUR_TABLE.c.tenant == tenant, HOUR_TABLE.c.store == store,
        HOUR_TABLE.c.hour >= since, HOUR_TABLE.c.hour < until,
    ))
    connection.execute(delete(DAY_TABLE).where(
        DAY_TABLE.c.tenant == tenant, DAY_TABLE.c.store == store,
        DAY_TABLE.c.day >= since.date(), DAY_TABLE.c.day < until.date(),
    ))
    hour_rows = [
        {"tenant": tenant, "store": store, "zone": zone or WHOLE_STORE, "hour": hour,
         **_counts(figures)}
        for (_, zone, hour), figures in hours.items()
    ]
    day_rows = [
        {"tenant": tenant, "store": store, "zone": zone or WHOLE_STORE, "day": day,
         "median_dwell_s": figures.median_dwell_s, **_counts(figures)}
        for (_, zone, day), figures in days.items()
    ]
    if hour_rows:
        connection.execute(HOUR_TABLE.insert(), hour_rows)
    if day_rows:
        connection.execute(DAY_TABLE.insert(), day_rows)


def lock_store(session: Session, *, tenant: str, store: str) -> None:
    """Hold a store's roll-ups for this transaction (PostgreSQL): two workers whose marks
    lead to overlapping days rebuild them one after the other, each from what the other
    committed. SQLite runs one writing transaction at a time anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return
    key = zlib.crc32(f"footfall/{tenant}/{store}".encode())
    session.connection().execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    #: Marks taken (each deleted once, by one worker).
    hours: int
    #: Store days rebuilt for them.
    days: int


def refresh_dirty(session: Session, *, limit: int) -> RefreshOutcome:
    """Take up to `limit` marked hours and rebuild their days, in the caller's
    transaction (commit it: the marks are deleted with the rebuild)."""
    taken = session.connection().execute(
        delete(DIRTY_TABLE)
        .where(take(session, DIRTY_TABLE, where=DIRTY_TABLE.c.id.is_not(None),
                    order_by=[DIRTY_TABLE.c.marked_at, DIRTY_TABLE.c.id], limit=limit))
        .returning(DIRTY_TABLE.c.tenant, DIRTY_TABLE.c.store, DIRTY_TABLE.c.hour)
    ).all()
    by_store: dict[tuple[str, str], set[date]] = {}
    for tenant, store, hour in taken:
        by_store.setdefault((tenant, store), set()).add(hour.date())
    days = 0
    for (tenant, store), store_days in sorted(by_store.items()):
        lock_store(session, tenant=tenant, store=store)
        days += rebuild_store_days(session, tenant=tenant, store=store, days=store_days)
    return RefreshOutcome(hours=len(taken), days=days)


def refresh_step(engine: Engine, *, limit: int, now: datetime) -> RefreshOutcome:
    """The worker's step: rebuild marked hours, `limit` per transaction, until none is
    left that was marked when the step began (what ingest marks meanwhile waits for the
    next step, so a busy ingest cannot keep a step going); sets the lag gauge."""
    hours = days = 0
    while True:
        with session_scope(engine) as session:
            outcome = refresh_dirty(session, limit=limit)
            session.commit()
        hours, days = hours + outcome.hours, days + outcome.days
        FOOTFALL_ROLLUP_HOURS.inc(outcome.hours)
        if outcome.hours < limit:
            break
        with session_scope(engine) as session:
            oldest = oldest_mark(session)
        if oldest is None or oldest > now:
            break
    with session_scope(engine) as session:
        oldest = oldest_mark(session)
    FOOTFALL_ROLLUP_LAG_SECONDS.set(
        max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    )
    return RefreshOutcome(hours=hours, days=days)


def oldest_mark(session: Session) -> datetime | None:
    """When the oldest hour still waiting was marked (None: the roll-ups are current)."""
    found: datetime | None = session.exec(select(func.min(FootfallDirtyHour.marked_at))).one()
    return found


def stores_with_events(session: Session, *, tenant: str, since: datetime,
                       until: datetime) -> list[str]:
    """Stores with events in [since, until), or roll-ups there (whose events may have
    gone: those are rebuilt empty)."""
    with_events = session.exec(select(PresenceEventRow.store).distinct().where(
        col(PresenceEventRow.tenant) == tenant,
        col(PresenceEventRow.first_seen) < until,
        col(PresenceEventRow.last_seen) >= since - VISIT_GAP,
    )).all()
    with_rollups = session.exec(select(FootfallHour.store).distinct().where(
        col(FootfallHour.tenant) == tenant, col(FootfallHour.hour) >= since,
        col(FootfallHour.hour) < until,
    )).all()
    return sorted(set(with_events) | set(with_rollups))


def rebuild_python(session: Session, *, tenant: str, since: date, until: date) -> int:
    """Rebuild a tenant's days [since, until) store by store, as the worker does."""
    start, end = _day_start(since), _day_start(until)
    days = [since + DAY * n for n in range((until - since).days)]
    rebuilt = 0
    for store in stores_with_events(session, tenant=tenant, since=start, until=end):
        lock_store(session, tenant=tenant, store=store)
        rebuilt += rebuild_store_days(session, tenant=tenant, store=store, days=days)
    return rebuilt


def counts_of(row: object) -> dict[str, int]:
    """A roll-up row's dwell histogram under the buckets' names (`row`: a FootfallCounts,
    or a database row with its columns)."""
    return {name: int(getattr(row, column)) for name, column in DWELL_COLUMNS.items()}
