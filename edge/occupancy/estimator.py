"""From scans to people: a rate estimate, gated by presence, per zone and capability class.

Each phone scans at some rate; in a window, the scans of N phones number about N times
that rate, whatever their addresses did. So, per zone and capability class, the estimate
for a minute is

    people = presence x max(1, phones - FLOOR_SLACK) x (people per phone)
    phones = rate / (scans per phone per minute)

where `rate` is the class's scans per minute over a window of `RATE_WINDOW_S` centred on
the minute (counted only while the class is present, so a phone arriving or leaving does
not smear over the whole window), corrected for the scans that grouping merged because
two phones of one class scanned within the same second (dead time, as a particle counter
corrects for it: true = observed / (1 - observed x dead time)); `presence` is the share of
the minute the class was present, its scans being no further apart than its adaptive
timeout (`edge.timeouts`). With the rate of one phone known, `phones` is unbiased
whatever the mix of addresses (the idea of RateCount, He, Chang and Chan, 2025: counting
from the probe rate needs no training); the calibration of that rate is the figure to
check per deployment (`scans_per_phone_per_minute`, `people_per_phone`). Phones' own rates
differ (0.4 to 2.2 scans a minute in the dataset), so a class that is present counts as at
least one phone (`FLOOR_SLACK` keeps that floor from lifting the average).

A phone whose address is heard again in a later scan (`Scan.stable`: associated, or not
randomizing) needs no rate: it counts as exactly one phone while present, under a key of
its own, and its scans are left out of its class's rate (such a phone probes far less
often than the calibrated rate: the dataset's associated iPhone 12 Pro 0.55 times a
minute, so by the rate it would count as 0.4 of a phone).

Everything here is times and small integers; the class keys are process-salted hashes kept
only as long as the window needs them (`forget`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from edge.occupancy.grouping import SCAN_GAP_S, Scan
from edge.timeouts import GAPS_KEPT, MAX_EXIT_AFTER_S, exit_timeout, median_gap

#: Scans per phone per minute as `edge.occupancy.grouping` groups them: the mean of the
#: eleven phones of the Probe Requests Open Dataset heard by three radios on channels 1, 6
#: and 11 (bench/bench_occupancy.py measures it; the phones range from 0.4 to 2.2). A
#: calibration, to be checked where a gateway's radio hears less (a single hopping radio).
SCANS_PER_PHONE_PER_MINUTE: Final = 1.32
#: The rate is measured over this window centred on the minute: a phone scans about once
#: a minute, so nine minutes hold a dozen scans per phone (a count that varies by about a
#: third rather than by its whole size), while presence gating keeps arrivals sharp.
RATE_WINDOW_S: Final = 540.0
#: Two scans of one class starting closer than this are counted as one: the grouping's
#: gap plus the half second a scan lasts.
DEAD_TIME_S: Final = SCAN_GAP_S + 0.5
#: The dead-time correction never multiplies by more than 1 / this: beyond it a class
#: scans almost continuously and the scans can no longer be told apart at all.
MIN_LIVE_FRACTION: Final = 0.2
#: Presence starts before a class's first scan and ends after its last: by half its median
#: gap, at most this (a phone is heard some time after it arrives).
MAX_EXTENSION_S: Final = 60.0
#: The rate of a class present for less than this is taken over this long: one scan in a
#: few seconds of presence is not a rate of several a minute.
MIN_RATE_SPAN_S: Final = 60.0
#: A present class is at least one phone, and a slow phone (0.4 scans a minute against
#: the calibrated 1.3) would otherwise count as a third of one; but taking the larger of 1
#: and a noisy estimate lifts the average, so this much is taken off the estimate first.
#: An empirical figure, chosen on the benchmark's crowds (dataset and synthetic: with it,
#: per-minute MAE at up to 10 present 0.98 instead of 1.16 on the synthetic crowds, 0.70 /
#: 0.59 instead of 0.67 / 0.57 on the dataset's), so those figures are in-sample for it.
FLOOR_SLACK: Final = 0.3
_MINUTE = 60.0
#: Keys of single-address "classes" are the address hash XOR this, apart from the
#: capability classes' (both are 64-bit hashes; a collision merges two keys, no more).
_STABLE_KEY: Final = 0x5A5A_5A5A_5A5A_5A5A

Span = tuple[float, float]


@dataclass(frozen=True, slots=True)
class EstimatorSettings:
    #: One phone's scans per minute (see `SCANS_PER_PHONE_PER_MINUTE`).
    scans_per_phone_per_minute: float = SCANS_PER_PHONE_PER_MINUTE
    #: People per phone heard: below 1 where many carry two devices, above where many
    #: carry none with Wi-Fi on (the device-to-person calibration).
    people_per_phone: float = 1.0
    #: The shortest timeout of a class's presence (the tracker's `exit_after_s`).
    min_gap_s: float = 120.0
    max_gap_s: float = MAX_EXIT_AFTER_S
    window_s: float = RATE_WINDOW_S
    #: Taken off a class's estimate before the floor of one phone (`FLOOR_SLACK`).
    floor_slack: float = FLOOR_SLACK

    def __post_init__(self) -> None:
        if self.scans_per_phone_per_minute <= 0 or self.people_per_phone <= 0:
            raise ValueError("the calibration figures must be positive")
        if self.min_gap_s <= 0 or self.window_s < _MINUTE:
            raise ValueError("the gap and window must be positive (the window at least 60 s)")
        if not 0.0 <= self.floor_slack < 1.0:
            raise ValueError("the floor's slack must be in [0, 1)")


def presence_spans(
    starts: Sequence[float], now: float, *, minimum: float, maximum: float = MAX_EXIT_AFTER_S,
) -> list[Span]:
    """When a class was present, from the start times of its scans (sorted) seen by `now`.

    Scans no further apart than the class's adaptive timeout (`edge.timeouts`, learnt from
    its gaps up to `maximum`, the gap that ended a span included) are one span; the last
    span is still open at `now` if its timeout has not run out. Each span is extended at
    both ends by half the class's median gap (at most `MAX_EXTENSION_S`).
    """
    if not starts:
        return []
    spans: list[Span] = []
    gaps: list[float] = []
    first = last = starts[0]
    for at in starts[1:]:
        gap = at - last
        if gap > exit_timeout(gaps[-GAPS_KEPT:], minimum, maximum=maximum):
            spans.append((first, last))
            first = at
        if gap <= maximum:
            gaps.append(gap)
        last = at
    recent = gaps[-GAPS_KEPT:]
    end = now if now - last <= exit_timeout(recent, minimum, maximum=maximum) else last
    spans.append((first, end))
    extension = min(median_gap(recent) / 2, MAX_EXTENSION_S) if recent else MAX_EXTENSION_S / 2
    return [(start - extension, stop + extension) for start, stop in spans]


def overlap(spans: Sequence[Span], start: float, end: float) -> float:
    """Seconds of [start, end) that `spans` (disjoint) cover."""
    return sum(max(0.0, min(end, stop) - max(start, begin)) for begin, stop in spans)


def dead_time_corrected(rate_per_s: float, dead_time_s: float = DEAD_TIME_S) -> float:
    """The true rate of events whose observed rate is `rate_per_s` when an event within
    `dead_time_s` of the previous one is not seen (non-paralysable dead time)."""
    return rate_per_s / max(1.0 - rate_per_s * dead_time_s, MIN_LIVE_FRACTION)


class RateEstimator:
    """Scan start times per zone and class over the window; estimates per zone and minute."""

    __slots__ = ("_stable", "_starts", "settings")

    def __init__(self, settings: EstimatorSettings) -> None:
        self.settings = settings
        self._starts: dict[tuple[str, int], list[float]] = {}
        #: Keys of `_starts` that stand for one address heard across scans: one phone.
        self._stable: set[tuple[str, int]] = set()

    @property
    def classes(self) -> int:
        """Zone and class pairs with scans in memory."""
        return len(self._starts)

    def add(self, zone: str, scan: Scan) -> None:
        if scan.stable is not None:  # one phone of its own; its scans leave its class's rate
            key = (zone, _STABLE_KEY ^ scan.stable)
            self._stable.add(key)
        else:
            key = (zone, scan.klass)
        starts = self._starts.setdefault(key, [])
        if not starts or scan.start >= starts[-1]:
            starts.append(scan.start)
        else:  # scans close in order of their last frame, not their first
            bisect.insort(starts, scan.start)

    def estimate(self, minute_start: float, now: float) -> dict[str, float]:
        """People per zone over the minute from `minute_start`, with what is known at `now`
        (every zone with any presence in the minute; the rest are 0)."""
        settings = self.settings
        half = settings.window_s / 2
        middle = minute_start + _MINUTE / 2
        low, high = middle - half, min(middle + half, now)
        per_scan = _MINUTE / settings.scans_per_phone_per_minute
        slack = settings.floor_slack
        people: dict[str, float] = {}
        for key, starts in self._starts.items():
            zone = key[0]
            spans = presence_spans(starts, now, minimum=settings.min_gap_s,
                                   maximum=settings.max_gap_s)
            present = overlap(spans, minute_start, minute_start + _MINUTE) / _MINUTE
            if present <= 0.0:
                continue
            if key in self._stable:  # one address, one phone, whatever its rate
                people[zone] = people.get(zone, 0.0) + present
                continue
            scans = bisect.bisect_left(starts, high) - bisect.bisect_left(starts, low)
            span = max(overlap(spans, low, high), MIN_RATE_SPAN_S)
            phones = dead_time_corrected(scans / span) * per_scan
            people[zone] = people.get(zone, 0.0) + present * max(1.0, phones - slack)
        return {zone: figure * settings.people_per_phone for zone, figure in people.items()}

    def forget(self, before: float) -> None:
        """Drop the scans that started before `before` (no longer in any window)."""
        for key in list(self._starts):
            starts = self._starts[key]
            keep = bisect.bisect_left(starts, before)
            if keep == len(starts):
                del self._starts[key]
                self._stable.discard(key)
            elif keep:
                del starts[:keep]
