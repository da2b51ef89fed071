"""The gateway's occupancy counter: probe frames in, one `OccupancyReport` per minute out.

Frames are read (`probes`), dropped below the tracker's RSSI floor, grouped into scans
(`grouping`), and each closed scan is placed in the zone its strongest frame reaches (the
tracker's zones). A minute's report is made once the estimator's window around it has
passed (`FINALIZE_DELAY_S`, about four minutes), so a minute is reported once, final.

Time is the frames' own clock, as for the tracker: a replay reports the same minutes at
any speed. The counter's clock only moves forward (the latest frame or `advance` time);
a frame a little older than the clock (radios deliver slightly out of order) is grouped
as it comes, and minutes already reported are never reopened.

Only counts leave: the report holds people, addresses, frames and scans per zone. The
addresses (as hashes) live in the minute's tally until its report is made, the grouping's
open scans for seconds (and its memory of addresses of closed scans for
`grouping.STABLE_MEMORY_S`), and the estimator's class keys (for a phone keeping its address,
a key derived from its hash) for `history_s`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from edge.occupancy.estimator import EstimatorSettings, RateEstimator
from edge.occupancy.grouping import ADDRESS_GAP_S, Scan, ScanGrouper
from edge.occupancy.probes import ProbeReader
from edge.tracker import Identity, TrackerThresholds
from shared.occupancy import (
    OCCUPANCY_WINDOW_S,
    OccupancyMethod,
    OccupancyReport,
    ZoneOccupancy,
)

_MINUTE: Final = float(OCCUPANCY_WINDOW_S)
#: Scans still open are closed at most this often (seconds of the frames' clock).
SWEEP_INTERVAL_S: Final = 1.0
#: Minutes with nothing heard are still reported (an empty report: the gateway was up),
#: but only this close to the clock: after a jump of the clock (a replay's gap, a Pi
#: without a real-time clock setting its time) the empty hours in between are skipped.
CATCH_UP_S: Final = 3600.0
#: People are reported to a hundredth: finer than any estimate is good for.
PEOPLE_DECIMALS: Final = 2

#: A raw probe request as a source hands it over: capture time, frame, RSSI.
RawProbe = tuple[float, bytes, float | None]


@dataclass(slots=True)
class _Tally:
    frames: int = 0
    scans: int = 0
    addresses: set[int] = field(default_factory=set)


@dataclass(slots=True)
class OccupancyCounters:
    frames: int = 0
    below_floor: int = 0
    unreadable: int = 0
    scans: int = 0
    reports: int = 0
    #: Minutes of an idle stretch skipped after a jump of the clock (`CATCH_UP_S`).
    skipped_minutes: int = 0


class OccupancyCounter:
    """Not thread-safe: the agent calls it from its loop, like the tracker."""

    def __init__(
        self, identity: Identity, thresholds: TrackerThresholds,
        settings: EstimatorSettings | None = None, *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.identity = identity
        self.thresholds = thresholds
        self.settings = settings or EstimatorSettings(min_gap_s=thresholds.exit_after_s)
        self.counters = OccupancyCounters()
        self._wall_clock = wall_clock
        self._reader = ProbeReader()
        self._grouper = ScanGrouper()
        self._estimator = RateEstimator(self.settings)
        self._tallies: dict[float, dict[str, _Tally]] = {}
        self._clock = float("-inf")
        self._next_sweep = float("-inf")
        #: The start of the next minute to report (None until the first frame or tick).
        self._next_minute: float | None = None

    @property
    def finalize_delay_s(self) -> float:
        """How long after a minute ends its report is made: the rest of the estimator's
        window, and the time a scan in it takes to close."""
        return self.settings.window_s / 2 - _MINUTE / 2 + ADDRESS_GAP_S + SWEEP_INTERVAL_S

    @property
    def history_s(self) -> float:
        """How far back scans are kept: the window, and the longest gap a presence spans."""
        return self.settings.window_s / 2 + self.settings.max_gap_s + _MINUTE

    def apply(self, thresholds: TrackerThresholds) -> None:
        """The tracker's floor, zones and timeouts from now on (the cloud's config changed
        them)."""
        self.thresholds = thresholds
        self.settings = dataclasses.replace(
            self.settings, min_gap_s=thresholds.exit_after_s,
            max_gap_s=max(thresholds.exit_after_s, thresholds.max_exit_after_s))
        self._estimator.settings = self.settings

    def observe(self, probes: Iterable[RawProbe]) -> list[OccupancyReport]:
        """Read, tally and group probe requests; returns the reports that became due."""
        reader, grouper, counters = self._reader, self._grouper, self.counters
        thresholds = self.thresholds
        floor, zone_for = thresholds.rssi_floor, thresholds.zone_for
        tallies = self._tallies
        for at, frame, rssi in probes:
            counters.frames += 1
            if rssi is not None and rssi < floor:
                counters.below_floor += 1
                continue
            probe = reader.read(at, frame, rssi)
            if probe is None:
                counters.unreadable += 1
                continue
            if self._next_minute is None:
                self._next_minute = _minute_of(at)
            minute = _minute_of(at)
            if minute >= self._next_minute:  # a minute already reported stays as it was
                tally = tallies.setdefault(minute, {}).setdefault(zone_for(rssi), _Tally())
                tally.frames += 1
                tally.addresses.add(probe.address)
            for scan in grouper.add(probe):
                self._place(scan)
            if at > self._clock:
                self._clock = at
        return self._due()

    def advance(self, now: float) -> list[OccupancyReport]:
        """Move the clock to `now` (live: the wall clock); returns the reports due."""
        if self._next_minute is None:
            self._next_minute = _minute_of(now)
        if now > self._clock:
            self._clock = now
        return self._due()

    def close(self) -> list[OccupancyReport]:
        """The end of a replay or a shutdown: every open scan closes and every minute up to
        the clock's is reported with what is known."""
        for scan in self._grouper.close_all():
            self._place(scan)
        reports = self._due()
        if self._next_minute is not None:
            last = _minute_of(self._clock)
            while self._next_minute <= last:
                reports.append(self._report(self._next_minute))
        return reports

    def _due(self) -> list[OccupancyReport]:
        clock = self._clock
        if clock >= self._next_sweep:
            self._next_sweep = clock + SWEEP_INTERVAL_S
            for scan in self._grouper.close_due(clock):
                self._place(scan)
        reports: list[OccupancyReport] = []
        delay = self.finalize_delay_s
        while self._next_minute is not None and self._next_minute + _MINUTE + delay <= clock:
            minute = self._next_minute
            if clock - minute > CATCH_UP_S and self._skip_idle(minute, clock):
                continue
            reports.append(self._report(minute))
        return reports

    def _skip_idle(self, minute: float, clock: float) -> bool:
        """Past `CATCH_UP_S`, move to the minutes around the next ones that heard anything
        (or to where catching up starts); True if the next minute moved."""
        lead = self.settings.max_gap_s + self.settings.window_s / 2
        heard = min(self._tallies, default=None)
        target = _minute_of(clock - CATCH_UP_S) if heard is None else _minute_of(heard - lead)
        if target <= minute:
            return False
        self.counters.skipped_minutes += int((target - minute) // _MINUTE)
        self._next_minute = target
        return True

    def _place(self, scan: Scan) -> None:
        zone = self.thresholds.zone_for(scan.rssi)
        self._estimator.add(zone, scan)
        self.counters.scans += 1
        minute = _minute_of(scan.start)
        if self._next_minute is not None and minute >= self._next_minute:
            self._tallies.setdefault(minute, {}).setdefault(zone, _Tally()).scans += 1

    def _report(self, minute: float) -> OccupancyReport:
        people = self._estimator.estimate(minute, self._clock)
        tallies = self._tallies.pop(minute, {})
        zones = [
            ZoneOccupancy(
                zone=zone,
                people=round(people.get(zone, 0.0), PEOPLE_DECIMALS),
                addresses=len(tally.addresses) if (tally := tallies.get(zone)) else 0,
                frames=tally.frames if tally else 0,
                scans=tally.scans if tally else 0,
            )
            for zone in sorted(set(people) | set(tallies))
        ]
        self._next_minute = minute + _MINUTE
        self._estimator.forget(minute - self.history_s)
        self._reader.forget()
        self.counters.reports += 1
        identity = self.identity
        return OccupancyReport(
            tenant=identity.tenant, store=identity.store, gateway=identity.gateway,
            sent_at=self._wall_clock(), window_start=datetime.fromtimestamp(minute, UTC),
            window_s=OCCUPANCY_WINDOW_S, method=OccupancyMethod.PROBE_RATE, zones=zones,
        )


def _minute_of(at: float) -> float:
    return at - at % _MINUTE
