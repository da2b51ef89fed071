"""The pure parts of the send gate: quiet hours on the customer's clock (across midnight
and daylight-saving changes) and the window test behind them."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time

import pytest

from cloud.scenarios.sending import hold_until, in_window
from cloud.settings import QuietHours, ScenarioSettings

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")
SETTINGS = ScenarioSettings()  # quiet 21:00-09:00


def madrid(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MADRID)


@pytest.mark.parametrize(("clock", "start", "end", "expected"), [
    (time(22), time(21), time(9), True),
    (time(0), time(21), time(9), True),
    (time(8, 59, 59), time(21), time(9), True),
    (time(9), time(21), time(9), False),  # the end is open
    (time(21), time(21), time(9), True),  # the start is closed
    (time(12), time(21), time(9), False),
    (time(13), time(12), time(14), True),  # a window within one day
    (time(14), time(12), time(14), False),
    (time(11, 59), time(12), time(14), False),
])
def test_in_window(clock: time, start: time, end: time, expected: bool) -> None:
    assert in_window(clock, start, end) is expected


@pytest.mark.parametrize(("now", "expected"), [
    (madrid(2026, 5, 10, 12, 0), madrid(2026, 5, 10, 12, 0)),  # daytime: at once
    (madrid(2026, 5, 10, 20, 59), madrid(2026, 5, 10, 20, 59)),
    (madrid(2026, 5, 10, 21, 0), madrid(2026, 5, 11, 9, 0)),  # evening: next morning
    (madrid(2026, 5, 10, 23, 30), madrid(2026, 5, 11, 9, 0)),
    (madrid(2026, 5, 11, 0, 10), madrid(2026, 5, 11, 9, 0)),  # after midnight: same day
    (madrid(2026, 5, 11, 8, 59), madrid(2026, 5, 11, 9, 0)),
    (madrid(2026, 12, 31, 22, 0), madrid(2027, 1, 1, 9, 0)),  # across the year
    # Spring forward (29 March 2026, 02:00 -> 03:00): the night is an hour shorter.
    (madrid(2026, 3, 28, 22, 0), madrid(2026, 3, 29, 9, 0)),
    (madrid(2026, 3, 29, 1, 30), madrid(2026, 3, 29, 9, 0)),
    # Fall back (25 October 2026, 03:00 -> 02:00): an hour longer.
    (madrid(2026, 10, 24, 22, 0), madrid(2026, 10, 25, 9, 0)),
])
def test_quiet_hours_hold_until_nine_on_the_customer_clock(
    now: datetime, expected: datetime
) -> None:
    held = hold_until(now.astimezone(UTC), zone=MADRID, settings=SETTINGS)
    assert held == expected
    assert held.utcoffset() == expected.utcoffset() or held.tzinfo is UTC
    assert held.astimezone(MADRID).time() in (time(9), now.time())


def test_the_hour_repeated_at_fall_back_is_quiet_both_times() -> None:
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    for now in (first, second):
        assert hold_until(now, zone=MADRID, settings=SETTINGS) == datetime(
            2026, 10, 25, 8, 0, tzinfo=UTC
        )


def test_quiet_hours_ending_inside_the_spring_gap_open_right_after_it() -> None:
    settings = ScenarioSettings(quiet_hours=QuietHours(start=time(23), end=time(2, 30)))
    held = hold_until(datetime(2026, 3, 28, 23, 30, tzinfo=UTC), zone=MADRID,
                      settings=settings)  # 00:30 CET; 02:30 does not exist that night
    assert held == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert held > datetime(2026, 3, 28, 23, 30, tzinfo=UTC)


def test_no_quiet_hours_or_an_empty_window_sends_at_once() -> None:
    now = datetime(2026, 5, 10, 22, 0, tzinfo=UTC)
    assert hold_until(now, zone=MADRID, settings=ScenarioSettings(quiet_hours=None)) == now
    empty = ScenarioSettings(quiet_hours=QuietHours(start=time(9), end=time(9)))
    assert hold_until(now, zone=MADRID, settings=empty) == now
