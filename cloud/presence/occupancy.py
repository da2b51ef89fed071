"""Occupancy: the people the gateways estimate per zone and minute, stored and read back.

A gateway reports each minute once (`shared.occupancy`); a report sent again overwrites
its rows. A store's figure for a minute is the sum over its gateways (each gateway counts
the phones its own radio hears, so gateways whose ranges overlap count some twice: the
deployment places them apart, or keeps one per store). An hour's figure is the mean of
its minutes (people present on average) and the largest minute (the peak).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Table, func
from sqlalchemy import select as core_select
from sqlmodel import Session, SQLModel

from cloud.db import dialect_insert
from cloud.examples import example
from cloud.presence.analytics import WindowError
from cloud.presence.models import WHOLE_STORE, OccupancyMinute
from shared.occupancy import OccupancyReport

OCCUPANCY_TABLE: Table = SQLModel.metadata.tables[OccupancyMinute.__tablename__]
#: Minute by minute for at most two days (2,880 points a line: more than a chart shows).
MAX_MINUTE_WINDOW = timedelta(days=2)
#: Hour by hour for at most a month, as footfall's hourly figures.
MAX_HOUR_WINDOW = timedelta(days=31)
#: People are given to a hundredth, as the gateways report them.
PEOPLE_DECIMALS = 2

Resolution = Literal["minute", "hour"]


class OccupancyRow(BaseModel):
    """People in a store (or zone) over one minute or hour."""

    model_config = ConfigDict(json_schema_extra=example(
        {"store": "madrid-centro", "zone": "checkout", "start": "2026-12-07T10:00:00Z",
         "resolution": "minute", "people": 6.5, "peak_people": 9.0, "addresses": 14.0,
         "minutes": 1},
    ))

    store: str
    #: None: the store as a whole.
    zone: str | None
    start: datetime
    resolution: Resolution
    #: Mean people present over the period (for a minute: the estimate itself).
    people: float
    #: The largest minute of the period.
    peak_people: float
    #: Mean distinct addresses heard per minute: what counting addresses would say.
    addresses: float
    #: Minutes of the period some gateway reported.
    minutes: int


def store_report(session: Session, *, report: OccupancyReport, received_at: datetime) -> int:
    """Upsert a report's rows (its zones and the gateway as a whole); returns how many."""
    zones = report.zones
    rows = [
        {"zone": zone.zone, "people": zone.people, "addresses": zone.addresses,
         "frames": zone.frames, "scans": zone.scans}
        for zone in zones
    ]
    rows.append({
        "zone": WHOLE_STORE,
        "people": round(sum(zone.people for zone in zones), PEOPLE_DECIMALS),
        "addresses": sum(zone.addresses for zone in zones),
        "frames": sum(zone.frames for zone in zones),
        "scans": sum(zone.scans for zone in zones),
    })
    common = {"tenant": report.tenant, "store": report.store, "gateway": report.gateway,
              "minute": report.window_start, "method": report.method.value,
              "received_at": received_at}
    values = [{**common, **row} for row in rows]
    insert = dialect_insert(session, OCCUPANCY_TABLE).values(values)
    keys = ("tenant", "store", "gateway", "zone", "minute")
    statement = insert.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: insert.excluded[name] for name in values[0] if name not in keys},
    )
    session.connection().execute(statement)
    return len(values)


def _aligned_to(unit: timedelta) -> Callable[[datetime], bool]:
    def aligned(moment: datetime) -> bool:
        offset = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        return offset % unit == timedelta()

    return aligned


def check_occupancy_window(since: datetime, until: datetime, resolution: Resolution) -> None:
    unit = timedelta(minutes=1) if resolution == "minute" else timedelta(hours=1)
    longest = MAX_MINUTE_WINDOW if resolution == "minute" else MAX_HOUR_WINDOW
    aligned = _aligned_to(unit)
    for name, bound in (("since", since), ("until", until)):
        if not aligned(bound):
            raise WindowError(f"{name} must be a whole {resolution} (UTC)", parameter=name)
    if until <= since:
        raise WindowError("until must be after since", parameter="until")
    if until - since > longest:
        raise WindowError(f"the window may be at most {longest.days} days by {resolution}",
                          parameter="until")


@dataclass(slots=True)
class _Period:
    people: float = 0.0
    peak: float = 0.0
    addresses: float = 0.0
    minutes: int = 0


def occupancy(
    session: Session, *, tenant: str, since: datetime, until: datetime,
    resolution: Resolution = "hour", store: str | None = None, zone: str | None = None,
) -> list[OccupancyRow]:
    """Per store (or one zone of it) and minute or hour in [since, until), gateways summed.
    Periods no gateway reported are left out (a gap, not a zero)."""
    check_occupancy_window(since, until, resolution)
    table = OCCUPANCY_TABLE.c
    query = (
        core_select(table.store, table.minute, func.sum(table.people).label("people"),
                    func.sum(table.addresses).label("addresses"))
        .where(table.tenant == tenant, table.minute >= since, table.minute < until,
               table.zone == (zone if zone is not None else WHOLE_STORE))
        .group_by(table.store, table.minute)
        .order_by(table.store, table.minute)
    )
    if store is not None:
        query = query.where(table.store == store)
    periods: dict[tuple[str, datetime], _Period] = {}
    for store_key, minute, people, addresses in session.execute(query).all():
        start = minute if resolution == "minute" else minute.replace(minute=0)
        period = periods.setdefault((store_key, start), _Period())
        period.people += people
        period.peak = max(period.peak, people)
        period.addresses += addresses
        period.minutes += 1
    return [
        OccupancyRow(
            store=store_key, zone=zone, start=start, resolution=resolution,
            people=round(period.people / period.minutes, PEOPLE_DECIMALS),
            peak_people=round(period.peak, PEOPLE_DECIMALS),
            addresses=round(period.addresses / period.minutes, PEOPLE_DECIMALS),
            minutes=period.minutes,
        )
        for (store_key, start), period in periods.items()
    ]
