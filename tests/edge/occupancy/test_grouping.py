"""Grouping probe requests into scans: by address, by class and burst timing, by sequence
continuity; what a closed scan keeps."""

from __future__ import annotations

import pytest

from edge.occupancy import grouping
from edge.occupancy.grouping import ADDRESS_GAP_S, Scan, ScanGrouper
from edge.occupancy.probes import ProbeFrame

A, B = 111, 222  # capability classes


def frame(at: float, address: int, klass: int = A, sequence: int = 0,
          rssi: float | None = -60.0) -> ProbeFrame:
    return ProbeFrame(at, address, sequence, klass, rssi)


def group(frames: list[ProbeFrame]) -> list[Scan]:
    grouper = ScanGrouper()
    scans: list[Scan] = []
    for item in frames:
        scans += grouper.add(item)
    return scans + grouper.close_all()


def test_an_iphone_scan_with_an_address_per_channel_is_one_scan() -> None:
    frames = [frame(0.1 * index + offset, address=index, sequence=1000 * index + step,
                    rssi=-70.0 + index)
              for index in range(3) for step, offset in enumerate((0.0, 0.02))]
    [scan] = group(frames)
    assert (scan.start, scan.end, scan.frames, scan.addresses) == (0.0, 0.22, 6, 3)
    assert (scan.klass, scan.rssi) == (A, -68.0)


def test_scans_of_a_class_a_few_seconds_apart_are_two() -> None:
    scans = group([frame(0, 1), frame(0.2, 2), frame(2.0, 3), frame(2.1, 4)])
    assert [(scan.start, scan.addresses) for scan in scans] == [(0, 2), (2.0, 2)]


def test_two_models_scanning_at_once_are_two_scans() -> None:
    scans = group([frame(0, 1, A), frame(0.05, 2, B), frame(0.1, 3, A), frame(0.15, 4, B)])
    assert sorted((scan.klass, scan.frames) for scan in scans) == [(A, 2), (B, 2)]


def test_an_address_heard_again_within_seconds_is_the_same_scan() -> None:
    """Android repeats a scan 4 and 8 s later with the same address (and may mix in a
    directed probe whose elements differ)."""
    [scan] = group([frame(0, 7, A), frame(4, 7, B), frame(8, 7, A)])
    assert (scan.end, scan.frames, scan.addresses, scan.klass) == (8, 3, 1, A)
    assert len(group([frame(0, 7), frame(ADDRESS_GAP_S + 0.5, 7)])) == 2


def test_a_sequence_counter_that_goes_on_joins_a_new_address() -> None:
    kept = group([frame(0, 1, sequence=4095), frame(3, 2, sequence=1)])  # wraps at 4096
    assert [(scan.frames, scan.addresses) for scan in kept] == [(2, 2)]
    fresh = group([frame(0, 1, sequence=100), frame(3, 2, sequence=3000)])
    assert len(fresh) == 2
    late = group([frame(0, 1, sequence=100), frame(ADDRESS_GAP_S + 1, 2, sequence=101)])
    assert len(late) == 2


def test_scans_close_once_silent_for_the_address_gap() -> None:
    grouper = ScanGrouper()
    grouper.add(frame(0, 1))
    grouper.add(frame(5, 2, B))
    assert grouper.close_due(ADDRESS_GAP_S) == []
    [first] = grouper.close_due(ADDRESS_GAP_S + 0.1)
    assert first.klass == A
    assert grouper.open_scans == 1
    assert grouper.add(frame(5.5, 1)) == []  # its address is free again: a new scan
    assert grouper.open_scans == 2
    assert len(grouper.close_due(100)) == 2
    assert grouper.counters.scans == 3


def test_out_of_order_frames_widen_the_scan() -> None:
    [scan] = group([frame(1.0, 1), frame(0.8, 2), frame(1.2, 3), frame(0.9, 1)])
    assert (scan.start, scan.end) == (0.8, 1.2)


def test_a_scan_without_rssi_has_none() -> None:
    [scan] = group([frame(0, 1, rssi=None)])
    assert scan.rssi is None


def test_open_scans_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grouping, "MAX_OPEN_SCANS", 3)
    grouper = ScanGrouper()
    forced = [scan for index in range(5) for scan in grouper.add(frame(index * 2, index, index))]
    assert [scan.klass for scan in forced] == [0, 1]
    assert grouper.open_scans == 3
    assert grouper.counters.forced == 2


def test_an_address_heard_again_in_a_later_scan_marks_it_stable() -> None:
    later = grouping.STABLE_MEMORY_S - 1
    scans = group([frame(0, 5), frame(100, 5), frame(200, 6), frame(200 + later + 20, 5)])
    assert [scan.stable for scan in scans] == [None, 5, None, None]  # the last came too late
