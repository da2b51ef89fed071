"""The occupancy counter: probe frames in, one report per minute out, counts only."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from edge.occupancy import EstimatorSettings, OccupancyCounter, RawProbe
from edge.occupancy.counter import CATCH_UP_S
from edge.tracker import Identity, TrackerThresholds
from shared.occupancy import OccupancyMethod, OccupancyReport, encode_occupancy_report
from shared.status import ZoneThreshold
from tests.edge.occupancy.support import MODEL_A, MODEL_B, T0, address, probe

IDENTITY = Identity("acme", "s1", "g1")
SENT = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
THRESHOLDS = TrackerThresholds(rssi_floor=-85, zones=(ZoneThreshold(zone="door", min_rssi=-50),))


def counter(**settings: float) -> OccupancyCounter:
    calibration = EstimatorSettings(scans_per_phone_per_minute=1.0, **settings)
    return OccupancyCounter(IDENTITY, THRESHOLDS, calibration, wall_clock=lambda: SENT)


def crowd(phones: int, minutes: int, *, rssi: int = -65, start: float = T0) -> list[RawProbe]:
    """`phones` iPhone-like phones scanning once a minute for `minutes`: every scan a new
    address on each of three channels, two frames each, a new sequence counter each."""
    frames: list[RawProbe] = []
    serial = 0
    for phone in range(phones):
        model = MODEL_A if phone % 2 else MODEL_B
        for minute in range(minutes):
            at = start + minute * 60.0 + phone * 7.0
            for channel in range(3):
                serial += 1
                for copy in range(2):
                    frame = probe(address(serial), serial * 97 + copy, rssi=rssi, model=model)
                    frames.append((at + channel * 0.1 + copy * 0.02, frame, float(rssi)))
    return sorted(frames, key=lambda item: item[0])


def people(reports: list[OccupancyReport]) -> dict[int, float]:
    return {int((report.window_start.timestamp() - T0) // 60):
            sum(zone.people for zone in report.zones) for report in reports}


def test_three_phones_with_thirty_addresses_a_minute_are_three_people() -> None:
    occupancy = counter()
    reports = occupancy.observe(crowd(3, 30)) + occupancy.close()
    assert [int((r.window_start.timestamp() - T0) // 60) for r in reports] == list(range(30))
    estimated = people(reports)
    for minute in range(8, 22):
        assert estimated[minute] == pytest.approx(3.0, abs=0.3)
    middle = reports[15].zones[0]
    assert (middle.zone, middle.addresses, middle.frames, middle.scans) == ("store", 9, 18, 3)
    assert reports[15].method is OccupancyMethod.PROBE_RATE
    assert reports[15].sent_at == SENT


def test_a_report_holds_counts_and_nothing_that_names_a_phone() -> None:
    occupancy = counter()
    reports = occupancy.observe(crowd(2, 12)) + occupancy.close()
    for report in reports:
        document = json.loads(encode_occupancy_report(report))
        assert set(document) == {"schema_version", "tenant", "store", "gateway", "sent_at",
                                 "window_start", "window_s", "method", "zones"}
        for zone in document["zones"]:
            assert set(zone) == {"zone", "people", "addresses", "frames", "scans"}


def test_a_minute_is_reported_once_its_window_has_passed() -> None:
    occupancy = counter()
    frames = crowd(1, 20)
    minute_3_end = T0 + 4 * 60
    due_at = minute_3_end + occupancy.finalize_delay_s
    reports = occupancy.observe(item for item in frames if item[0] < due_at - 1)
    assert [report.window_start.timestamp() for report in reports][-1] == T0 + 2 * 60
    reports = occupancy.advance(due_at)
    assert [report.window_start.timestamp() for report in reports] == [T0 + 3 * 60]
    assert occupancy.advance(due_at) == []


def test_zones_follow_the_strongest_frame_and_the_floor_drops_the_street() -> None:
    occupancy = counter()
    frames = crowd(1, 20, rssi=-45) + crowd(1, 20, rssi=-95)
    reports = occupancy.observe(sorted(frames, key=lambda item: item[0])) + occupancy.close()
    assert {zone.zone for zone in reports[10].zones} == {"door"}
    assert reports[10].zones[0].people == pytest.approx(1.0, abs=0.2)
    assert occupancy.counters.below_floor == len(frames) // 2


def test_live_minutes_with_nobody_are_empty_reports() -> None:
    occupancy = counter()
    assert occupancy.advance(T0) == []
    reports = occupancy.advance(T0 + 10 * 60)
    assert reports
    assert all(report.zones == [] for report in reports)


def test_a_jump_of_the_clock_skips_the_idle_hours_in_between() -> None:
    occupancy = counter()
    before = occupancy.observe(crowd(1, 5)) + occupancy.advance(T0 + 10 * 60)
    later = T0 + 5 * 3600
    after = occupancy.observe(crowd(1, 5, start=later)) + occupancy.close()
    assert len(before) + len(after) < (5 * 3600) / 60
    assert occupancy.counters.skipped_minutes > 0
    assert max(people(after).values()) > 0.5
    assert all(report.window_start.timestamp() >= later - CATCH_UP_S for report in after[1:])


def test_frames_of_a_minute_already_reported_change_nothing() -> None:
    occupancy = counter()
    reported = occupancy.observe(crowd(1, 10)) + occupancy.advance(T0 + 20 * 60)
    late = occupancy.observe([(T0 + 30.0, probe(address(999)), -60.0)])
    assert late == []
    assert all(report.window_start.timestamp() > T0 for report in occupancy.close())
    assert reported[0].window_start.timestamp() == T0


def test_config_changes_apply_to_new_frames() -> None:
    occupancy = counter()
    occupancy.apply(TrackerThresholds(rssi_floor=-60, exit_after_s=200))
    occupancy.observe(crowd(1, 2, rssi=-65))
    assert occupancy.counters.below_floor == occupancy.counters.frames
    assert occupancy.settings.min_gap_s == 200
    assert occupancy.settings.scans_per_phone_per_minute == 1.0  # the calibration stays
