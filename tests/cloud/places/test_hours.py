"""Operating hours on the store's wall clock, through DST changes and past midnight."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from cloud.places.hours import OpeningInterval, OperatingHours, Weekday, time_zone
from cloud.places.validation import PlaceError

MADRID = time_zone("Europe/Madrid")


def hours(*intervals: tuple[Weekday, str, str]) -> OperatingHours:
    return OperatingHours(tuple(
        OpeningInterval(day, time.fromisoformat(opens), time.fromisoformat(closes))
        for day, opens, closes in intervals
    ))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_day_shop_opens_at_nine_local_on_both_sides_of_the_spring_change() -> None:
    """Madrid moves from UTC+1 to UTC+2 on Sunday 31 March 2024: nine o'clock is 08:00 UTC
    on Saturday and 07:00 UTC on Sunday."""
    shop = hours(*[(day, "09:00", "21:00") for day in Weekday])
    assert not shop.is_open(utc("2024-03-30T07:59:59"), MADRID)
    assert shop.is_open(utc("2024-03-30T08:00:00"), MADRID)
    assert not shop.is_open(utc("2024-03-31T06:59:59"), MADRID)
    assert shop.is_open(utc("2024-03-31T07:00:00"), MADRID)
    assert shop.is_open(utc("2024-03-31T18:59:59"), MADRID)
    assert not shop.is_open(utc("2024-03-31T19:00:00"), MADRID)


def open_span(shop: OperatingHours, start: datetime, end: datetime) -> timedelta:
    """How long `shop` is open between two instants, minute by minute."""
    total = timedelta()
    at = start
    while at < end:
        if shop.is_open(at, MADRID):
            total += timedelta(minutes=1)
        at += timedelta(minutes=1)
    return total


def test_an_overnight_bar_is_open_seven_hours_on_the_spring_night() -> None:
    """Saturday 22:00 to 06:00: 21:00-04:00 UTC, because 02:00-03:00 never happens."""
    bar = hours((Weekday.SAT, "22:00", "06:00"))
    assert not bar.is_open(utc("2024-03-30T20:59:00"), MADRID)
    assert bar.is_open(utc("2024-03-30T21:00:00"), MADRID)
    assert bar.is_open(utc("2024-03-31T03:59:00"), MADRID)  # 05:59 CEST
    assert not bar.is_open(utc("2024-03-31T04:00:00"), MADRID)  # 06:00 CEST
    assert open_span(bar, utc("2024-03-30T12:00"), utc("2024-03-31T12:00")) == timedelta(hours=7)


def test_an_overnight_bar_is_open_nine_hours_on_the_autumn_night() -> None:
    """On 27 October 2024 01:00 UTC the clock goes back from 03:00 to 02:00."""
    bar = hours((Weekday.SAT, "22:00", "06:00"))
    assert bar.is_open(utc("2024-10-26T20:00:00"), MADRID)  # 22:00 CEST
    assert bar.is_open(utc("2024-10-27T04:59:00"), MADRID)  # 05:59 CET
    assert not bar.is_open(utc("2024-10-27T05:00:00"), MADRID)
    assert open_span(bar, utc("2024-10-26T12:00"), utc("2024-10-27T12:00")) == timedelta(hours=9)


def test_a_closing_time_the_clock_skips_closes_when_the_clock_jumps() -> None:
    late = hours((Weekday.SAT, "20:00", "02:30"))
    assert late.is_open(utc("2024-03-31T00:59:59"), MADRID)  # 01:59:59 CET
    assert not late.is_open(utc("2024-03-31T01:00:00"), MADRID)  # 03:00 CEST


def test_a_closing_time_the_clock_repeats_is_open_in_both_passes() -> None:
    late = hours((Weekday.SAT, "20:00", "02:30"))
    assert late.is_open(utc("2024-10-27T00:15:00"), MADRID)  # 02:15 CEST, first pass
    assert not late.is_open(utc("2024-10-27T00:45:00"), MADRID)  # 02:45 CEST
    assert late.is_open(utc("2024-10-27T01:15:00"), MADRID)  # 02:15 CET, second pass
    assert not late.is_open(utc("2024-10-27T01:45:00"), MADRID)


def test_sunday_night_runs_into_monday() -> None:
    club = hours((Weekday.SUN, "22:00", "02:00"))
    monday_1am = datetime(2024, 6, 3, 1, 0, tzinfo=MADRID)
    assert monday_1am.weekday() == Weekday.MON
    assert club.is_open(monday_1am, MADRID)
    assert not club.is_open(monday_1am + timedelta(hours=1), MADRID)
    assert not club.is_open(datetime(2024, 6, 2, 1, 0, tzinfo=MADRID), MADRID)  # Sunday 1am


def test_closing_at_midnight_and_open_all_day() -> None:
    evening = hours((Weekday.WED, "09:00", "00:00"))
    assert evening.is_open(datetime(2024, 6, 5, 23, 59, tzinfo=MADRID), MADRID)
    assert not evening.is_open(datetime(2024, 6, 6, 0, 0, tzinfo=MADRID), MADRID)
    all_day = hours((Weekday.TUE, "00:00", "00:00"))
    assert all_day.is_open(datetime(2024, 6, 4, 0, 0, tzinfo=MADRID), MADRID)
    assert all_day.is_open(datetime(2024, 6, 4, 23, 59, tzinfo=MADRID), MADRID)
    assert not all_day.is_open(datetime(2024, 6, 5, 0, 0, tzinfo=MADRID), MADRID)
    assert not all_day.is_open(datetime(2024, 6, 3, 23, 59, tzinfo=MADRID), MADRID)


def test_the_instant_is_converted_whatever_its_offset() -> None:
    shop = hours((Weekday.MON, "09:00", "10:00"))
    new_york = timezone(timedelta(hours=-4))
    assert shop.is_open(datetime(2024, 6, 3, 3, 30, tzinfo=new_york), MADRID)  # 09:30 Madrid


def test_empty_hours_and_offset_times_are_refused() -> None:
    with pytest.raises(PlaceError, match="at least one") as empty:
        OperatingHours(())
    assert empty.value.field == "hours"
    with pytest.raises(PlaceError) as offset:
        OpeningInterval(Weekday.MON, time(9, tzinfo=UTC), time(10))
    assert offset.value.field == "opens"
    with pytest.raises(PlaceError):
        OpeningInterval(7, time(9), time(10))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["Europe/Madird", "../../etc/passwd", "", "Europe/",
                                  "Europe/Madrid\x00", "a" * 65, 42, None])
def test_unknown_time_zones_are_refused(name: object) -> None:
    with pytest.raises(PlaceError) as error:
        time_zone(name)
    assert error.value.field == "timezone"


@pytest.mark.parametrize("name", ["UTC", "Europe/Madrid", "America/Argentina/Buenos_Aires",
                                  "Pacific/Fiji", "Etc/GMT+5"])
def test_iana_zone_names_resolve(name: str) -> None:
    assert str(time_zone(name)) == name
