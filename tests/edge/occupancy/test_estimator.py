"""The rate estimate: presence spans, the dead-time correction, people per zone and minute."""

from __future__ import annotations

import pytest

from edge.occupancy.estimator import (
    FLOOR_SLACK,
    MIN_LIVE_FRACTION,
    EstimatorSettings,
    RateEstimator,
    dead_time_corrected,
    overlap,
    presence_spans,
)
from edge.occupancy.grouping import Scan

T0 = 1_772_470_800.0


def scan(start: float, klass: int = 1) -> Scan:
    return Scan(start, start + 0.3, klass, frames=6, addresses=3, rssi=-60.0)


def test_regular_scans_are_one_span_extended_by_half_a_gap() -> None:
    starts = [T0 + 60.0 * index for index in range(5)]
    assert presence_spans(starts, T0 + 1000, minimum=120) == [(T0 - 30, T0 + 270)]


def test_a_long_silence_splits_and_an_open_span_reaches_now() -> None:
    starts = [T0, T0 + 60, T0 + 120, T0 + 800, T0 + 860]
    spans = presence_spans(starts, T0 + 900, minimum=120)
    assert spans == [(T0 - 30, T0 + 150), (T0 + 800 - 30, T0 + 900 + 30)]


def test_the_class_rhythm_is_learnt_even_from_the_gap_that_split() -> None:
    slow = [T0, T0 + 150, T0 + 300, T0 + 450]  # every gap over the 120 s minimum
    assert len(presence_spans(slow, T0 + 2000, minimum=120)) == 2  # the first gap splits
    assert presence_spans([T0], T0 + 10, minimum=120) == [(T0 - 30, T0 + 10 + 30)]


def test_overlap_and_dead_time() -> None:
    assert overlap([(0, 10), (20, 30)], 5, 25) == 10
    assert dead_time_corrected(0.1, 1.5) == pytest.approx(0.1 / 0.85)
    assert dead_time_corrected(2.0, 1.5) == pytest.approx(2.0 / MIN_LIVE_FRACTION)


def phones(classes: list[int], period_s: float = 60.0) -> RateEstimator:
    """Phones of the given classes, each scanning every `period_s` for half an hour."""
    estimator = RateEstimator(EstimatorSettings(scans_per_phone_per_minute=1.0))
    for phone, klass in enumerate(classes):
        for index in range(int(1800 / period_s)):
            estimator.add("floor", scan(T0 + phone * 13.0 + period_s * index, klass=klass))
    return estimator


def test_phones_at_the_calibrated_rate_are_people() -> None:
    """Four phones of four classes are four; two classes of two phones each are two phones
    each by their rate (corrected for dead time), less the floor's slack."""
    assert phones([0, 1, 2, 3]).estimate(T0 + 15 * 60, T0 + 40 * 60) == {"floor": 4.0}
    shared = phones([0, 1, 0, 1]).estimate(T0 + 15 * 60, T0 + 40 * 60)["floor"]
    assert shared == pytest.approx(2 * (dead_time_corrected(2 / 60) * 60 - FLOOR_SLACK))
    assert phones([0, 1]).estimate(T0 + 60 * 60, T0 + 70 * 60) == {}  # everyone gone


def test_a_slow_phone_still_counts_as_one_while_present() -> None:
    slow = phones([7], period_s=150.0)  # 0.4 scans a minute against the calibrated 1
    assert slow.estimate(T0 + 15 * 60, T0 + 40 * 60) == {"floor": 1.0}


def test_zones_and_the_people_per_phone_calibration() -> None:
    estimator = RateEstimator(EstimatorSettings(scans_per_phone_per_minute=1.0,
                                                people_per_phone=0.5))
    for index in range(30):
        estimator.add("door", scan(T0 + 60.0 * index))
        estimator.add("floor", scan(T0 + 60.0 * index + 7))
        estimator.add("floor", scan(T0 + 60.0 * index + 31, klass=2))
    people = estimator.estimate(T0 + 15 * 60, T0 + 40 * 60)
    assert people["door"] == pytest.approx(0.5, rel=0.1)
    assert people["floor"] == pytest.approx(1.0, rel=0.1)


def test_forget_drops_what_no_window_needs() -> None:
    estimator = RateEstimator(EstimatorSettings())
    estimator.add("floor", scan(T0, klass=1))
    estimator.add("floor", scan(T0 + 500, klass=2))
    estimator.add("floor", scan(T0 + 400, klass=2))  # closes late: inserted in order
    estimator.forget(T0 + 100)
    assert estimator.classes == 1
    estimator.forget(T0 + 450)
    assert estimator.classes == 1
    estimator.forget(T0 + 600)
    assert estimator.classes == 0


@pytest.mark.parametrize("changes", [{"scans_per_phone_per_minute": 0},
                                     {"people_per_phone": -1}, {"window_s": 30},
                                     {"min_gap_s": 0}])
def test_settings_refuse_nonsense(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        EstimatorSettings(**changes)


@pytest.mark.parametrize("slack", [-0.1, 1.0])
def test_the_floor_slack_stays_below_one_phone(slack: float) -> None:
    with pytest.raises(ValueError, match="slack"):
        EstimatorSettings(floor_slack=slack)


def test_an_address_heard_across_scans_is_one_phone_whatever_its_rate() -> None:
    """A phone keeping its address counts as exactly one, and its scans leave the rate of
    its class (here the class's other phone stays one, not one and a half)."""
    estimator = RateEstimator(EstimatorSettings(scans_per_phone_per_minute=1.0))
    for minute in range(30):
        estimator.add("floor", scan(T0 + minute * 60 + 5))  # one phone of class 1
        estimator.add("floor", Scan(T0 + minute * 60 + 35, T0 + minute * 60 + 35.3, 1,
                                    frames=2, addresses=1, rssi=-60.0, stable=99))
    assert estimator.estimate(T0 + 15 * 60, T0 + 40 * 60) == {"floor": pytest.approx(2.0)}
    estimator.forget(T0 + 60 * 60)
    assert estimator.classes == 0
