"""Operating hours of a geofence, in the store's own wall-clock time.

A shop opens at 09:00 local time whatever the UTC offset is that day, so hours are kept
as wall-clock times per weekday and an instant is turned into the store's wall-clock time
(its IANA zone, DST included) before it is compared. This makes the two DST nights come out
the way a shopkeeper expects: on the spring night a bar open 22:00-06:00 is open for seven
real hours, on the autumn night for nine, and a time the clock skips is simply never seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from enum import IntEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud.places.validation import PlaceError


class Weekday(IntEnum):
    """datetime.weekday() numbering; the short names are the JSON keys."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6


@dataclass(frozen=True, slots=True)
class OpeningInterval:
    """Open on `weekday` from `opens` until `closes` (exclusive), wall-clock time.

    `closes` <= `opens` means the interval runs past midnight and closes on the next day
    (22:00-02:00 on Friday is Friday night until Saturday 02:00; 09:00-00:00 is until
    midnight). `closes` == `opens` is a full 24 hours from `opens`.
    """

    weekday: Weekday
    opens: time
    closes: time

    def __post_init__(self) -> None:
        for name in ("opens", "closes"):
            value = getattr(self, name)
            if not isinstance(value, time):
                raise PlaceError(name, f"must be a time of day, got {type(value).__name__}")
            if value.tzinfo is not None:
                raise PlaceError(name, "must be a wall-clock time without a UTC offset: the"
                                   " geofence's time zone applies")
        if not isinstance(self.weekday, Weekday):
            raise PlaceError("weekday", f"must be a Weekday, got {self.weekday!r}")

    @property
    def overnight(self) -> bool:
        return self.closes <= self.opens


@dataclass(frozen=True, slots=True)
class OperatingHours:
    """A weekly schedule: open whenever any interval says so (overlaps are harmless)."""

    intervals: tuple[OpeningInterval, ...]

    def __post_init__(self) -> None:
        if not self.intervals:
            raise PlaceError("hours", "needs at least one opening interval (leave the hours"
                               " out for a geofence that is always active)")
        for position, interval in enumerate(self.intervals):
            if not isinstance(interval, OpeningInterval):
                raise PlaceError(f"hours[{position}]", "must be an OpeningInterval")

    def is_open_at_wall_time(self, weekday: int, wall: time) -> bool:
        """Whether the schedule is open at wall-clock `wall` on `weekday` (0 = Monday)."""
        yesterday = (weekday - 1) % 7
        for interval in self.intervals:
            if interval.weekday == weekday and wall >= interval.opens and (
                interval.overnight or wall < interval.closes
            ):
                return True
            if interval.weekday == yesterday and interval.overnight and wall < interval.closes:
                return True
        return False

    def is_open(self, at: datetime, zone: ZoneInfo) -> bool:
        """Whether the schedule is open at the instant `at` (aware) in time zone `zone`."""
        local = at.astimezone(zone)
        return self.is_open_at_wall_time(local.weekday(), local.time())


#: IANA zone names are short paths of letters ("America/Argentina/Buenos_Aires"); anything
#: else is refused before it reaches the file system lookup of zoneinfo.
ZONE_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,3}$")


def time_zone(name: object) -> ZoneInfo:
    """The IANA zone `name` (e.g. "Europe/Madrid"), or PlaceError naming `timezone`."""
    if not isinstance(name, str) or len(name) > 64 or not ZONE_NAME_PATTERN.fullmatch(name):
        raise PlaceError("timezone", "must be an IANA time zone name such as Europe/Madrid")
    return _load_zone(name)


@lru_cache(maxsize=1024)
def _load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise PlaceError("timezone", f"{name!r} is not a known IANA time zone") from error
