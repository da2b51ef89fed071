"""Birthdays on the customer's calendar, 29 February included."""

from __future__ import annotations

from datetime import date

import pytest

from cloud.scenarios.schedule import is_birthday


@pytest.mark.parametrize(("birth", "today", "expected"), [
    (date(1990, 5, 10), date(2026, 5, 10), True),
    (date(1990, 5, 10), date(2026, 5, 11), False),
    (date(1990, 5, 10), date(2026, 6, 10), False),
    (date(2000, 2, 29), date(2024, 2, 29), True),  # leap year: on the day
    (date(2000, 2, 29), date(2024, 2, 28), False),  # leap year: not the day before
    (date(2000, 2, 29), date(2025, 2, 28), True),  # common year: 28 February instead
    (date(2000, 2, 29), date(2025, 3, 1), False),  # ... and not 1 March as well
    (date(2000, 2, 28), date(2025, 2, 28), True),
    (date(2000, 2, 28), date(2024, 2, 29), False),
    (date(2000, 2, 29), date(2100, 2, 28), True),  # 2100 is not a leap year
    (date(2000, 12, 31), date(2026, 12, 31), True),
    (date(2000, 1, 1), date(2026, 1, 1), True),
])
def test_is_birthday(birth: date, today: date, expected: bool) -> None:
    assert is_birthday(birth, today) is expected
