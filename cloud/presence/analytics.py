"""Footfall: how many devices passed, how many came in, for how long, and who came back.

Read from the roll-ups (`cloud.presence.rollups`): a chart of a year of a hundred stores
reads a row per store and day, not the events. `footfall_from_events` computes the same
figures from the events themselves, the way the roll-ups are built (`cloud.presence
.visits`): the tests hold the two equal, and it is the baseline the benchmark measures.

A device that stayed in range for less than a minute walked past; longer, it visited.
New versus repeat can only be told for stable pseudonyms, i.e. consenting customers and
anyone seen in the last day; visits under daily pseudonyms are counted as "unknown",
which is the privacy rules working as intended.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select as core_select
from sqlmodel import Session

from cloud.examples import example
from cloud.presence.models import (
    WHOLE_STORE,
    FootfallDay,
    FootfallHour,
    FootfallHourPublic,
)
from cloud.presence.rollups import counts_of
from cloud.presence.visits import (
    DWELL_BUCKETS,
    PASSERBY_MAX_DWELL_S,
    REPEAT_LOOKBACK,
    Tally,
    counted_visits,
    day_of,
    dwell_bucket,
    tally,
)

#: One request covers at most a year and a day (a leap year, with room for the day the
#: chart ends on): a row per store and day, read from the roll-ups.
MAX_WINDOW = timedelta(days=366)
#: Hourly figures for at most a month: 744 rows per store and zone is already more
#: than a chart can show.
MAX_HOURLY_WINDOW = timedelta(days=31)

__all__ = [
    "DWELL_BUCKETS", "MAX_HOURLY_WINDOW", "MAX_WINDOW", "PASSERBY_MAX_DWELL_S",
    "REPEAT_LOOKBACK", "FootfallRow", "WindowError", "dwell_bucket", "footfall",
    "footfall_from_events", "footfall_hourly",
]


class FootfallRow(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"store": "madrid-centro", "zone": None, "day": "2026-12-06", "devices": 1840,
         "visitors": 612, "passers_by": 1228, "capture_rate": 0.333, "new_visitors": 402,
         "repeat_visitors": 150, "unknown_visitors": 60, "median_dwell_s": 540.0,
         "dwell": {"0-5m": 210, "5-15m": 250, "15-30m": 110, "30m+": 42}},
    ))

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


def _is_midnight(moment: datetime) -> bool:
    return moment.astimezone(UTC).time() == datetime.min.time()


def _is_whole_hour(moment: datetime) -> bool:
    return moment.replace(minute=0, second=0, microsecond=0) == moment and (
        moment.utcoffset() or timedelta()) % timedelta(hours=1) == timedelta()


class WindowError(ValueError):
    """A window the figures cannot answer; `parameter` names the bound at fault."""

    def __init__(self, message: str, *, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def check_window(
    since: datetime, until: datetime, *, longest: timedelta, aligned: Callable[[datetime], bool],
    unit: str, period: str,
) -> None:
    """Raise WindowError, saying what is wrong and where, for a window the figures
    cannot answer: empty, too long, or not cut at the `unit` the figures are kept by."""
    for name, bound in (("since", since), ("until", until)):
        if not aligned(bound):
            raise WindowError(f"{name} must be {unit}: footfall is kept per UTC {period}",
                              parameter=name)
    if until <= since:
        raise WindowError("until must be after since", parameter="until")
    if until - since > longest:
        raise WindowError(f"the window may be at most {longest.days} days", parameter="until")


def footfall(
    session: Session, *, tenant: str, since: datetime, until: datetime, store: str | None = None,
    by_zone: bool = False,
) -> list[FootfallRow]:
    """Per store and day (or per store, zone and day) for visits starting in [since,
    until), whole UTC days: the days the figures are kept by."""
    check_window(since, until, longest=MAX_WINDOW, aligned=_is_midnight, unit="midnight UTC",
                 period="day")
    # Plain rows, not ORM instances: a quarter of a hundred stores is 9,000 of them, and
    # building an ORM object for each cost ten times the query.
    days = FootfallDay.__table__.c  # type: ignore[attr-defined]
    query = core_select(days).where(
        days.tenant == tenant,
        days.day >= since.astimezone(UTC).date(), days.day < until.astimezone(UTC).date(),
        days.devices > 0,
        (days.zone != WHOLE_STORE) if by_zone else (days.zone == WHOLE_STORE),
    )
    if store is not None:
        query = query.where(days.store == store)
    rows = session.execute(query.order_by(days.store, days.zone, days.day)).all()
    return [
        FootfallRow(
            store=row.store, zone=row.zone if by_zone else None, day=row.day,
            devices=row.devices, visitors=row.visitors, passers_by=row.passers_by,
            capture_rate=round(row.visitors / row.devices, 4),
            new_visitors=row.new_visitors, repeat_visitors=row.repeat_visitors,
            unknown_visitors=row.unknown_visitors, median_dwell_s=row.median_dwell_s,
            dwell=counts_of(row),
        )
        for row in rows
    ]


def footfall_hourly(
    session: Session, *, tenant: str, since: datetime, until: datetime,
    store: str | None = None, zone: str | None = None,
) -> list[FootfallHourPublic]:
    """Per store (or zone) and hour for visits starting in [since, until), whole UTC
    hours. Without `zone`, the store as a whole (zone None)."""
    check_window(since, until, longest=MAX_HOURLY_WINDOW, aligned=_is_whole_hour,
                 unit="a whole hour", period="hour")
    hours = FootfallHour.__table__.c  # type: ignore[attr-defined]  # plain rows, as footfall()
    query = core_select(hours).where(
        hours.tenant == tenant, hours.hour >= since, hours.hour < until,
        hours.zone == (zone if zone is not None else WHOLE_STORE), hours.devices > 0,
    )
    if store is not None:
        query = query.where(hours.store == store)
    rows = session.execute(query.order_by(hours.store, hours.hour)).all()
    return [
        FootfallHourPublic(
            store=row.store, zone=row.zone or None, hour=row.hour, devices=row.devices,
            visitors=row.visitors, passers_by=row.passers_by,
            capture_rate=round(row.visitors / row.devices, 4),
        )
        for row in rows
    ]


def footfall_from_events(
    session: Session, *, tenant: str, since: datetime, until: datetime, store: str | None = None,
    by_zone: bool = False,
) -> list[FootfallRow]:
    """`footfall` computed from the stored events, every one of the window read: the
    reference the roll-ups are held to, and the benchmark's baseline. Any window."""
    check_window(since, until, longest=MAX_WINDOW, aligned=lambda _bound: True, unit="",
                 period="")
    visits = [
        visit for visit in counted_visits(session, tenant=tenant, store=store, since=since,
                                          until=until)
        if (visit.zone is not None) == by_zone
    ]
    figures = tally(visits, day_of)
    return [
        _row(store_key, zone, day, figures[(store_key, zone, day)])
        for store_key, zone, day in sorted(
            figures, key=lambda key: (key[0], key[1] or "", str(key[2]))
        )
    ]


def _row(store: str, zone: str | None, day: object, figures: Tally) -> FootfallRow:
    assert isinstance(day, date)
    return FootfallRow(
        store=store, zone=zone, day=day, devices=figures.devices, visitors=figures.visitors,
        passers_by=figures.passers_by, capture_rate=figures.capture_rate,
        new_visitors=figures.new_visitors, repeat_visitors=figures.repeat_visitors,
        unknown_visitors=figures.unknown_visitors, median_dwell_s=figures.median_dwell_s,
        dwell=dict(figures.dwell),
    )
