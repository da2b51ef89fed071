"""Grouping a phone's probe requests into scans, in gateway memory, over seconds.

A phone looking for networks sends a burst of probe requests over every channel within
about half a second (a *scan*), then falls silent for 20 s to 4 minutes. With address
randomization an iPhone uses a new address for nearly every channel of every scan (and
starts a new sequence counter with it): counting addresses counts a phone five to ten
times per scan. Counting scans instead removes that multiplication; the estimator then
turns the rate of scans into people.

Frames join an open scan when they carry its address (within `ADDRESS_GAP_S`), when they
are of its capability class and follow its last frame within `SCAN_GAP_S`, or when their
sequence number continues its last one (phones that keep the counter across addresses).
A scan closes `ADDRESS_GAP_S` after its last frame; what is kept of it then (`Scan`) holds
no address, only times, its class and counts. Open scans live for seconds, never longer.
The address hashes of closed scans are remembered for `STABLE_MEMORY_S` (in memory,
nowhere else), so that a phone that keeps its address (associated to a network) is known
as one phone: its next scan carries a number standing for that address (`Scan.stable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge.occupancy.probes import ProbeFrame

#: Frames of one class this close belong to one scan: a phone covers channels 1-13 in
#: about half a second, and two phones of one class rarely start within the same second
#: (the estimator's dead-time correction accounts for those that do).
SCAN_GAP_S: Final = 1.0
#: The same address within this long is the same scan: Android phones keep an address
#: for the repeats of a scan a few seconds apart, and no phone keeps one longer while
#: randomizing between scans.
ADDRESS_GAP_S: Final = 10.0
#: A sequence number at most this far past a scan's last one (and within `ADDRESS_GAP_S`)
#: continues it: the counter counts every frame sent, and a phone sends a few on other
#: channels in between that a single radio does not hear.
SEQUENCE_STEP: Final = 4
#: Sequence numbers are 12 bits and wrap.
SEQUENCE_MODULO: Final = 4096
#: An address heard again in a later scan within this long is a phone that keeps its
#: address (associated to a network, or not randomizing): the estimator counts it as one
#: phone of its own rather than by the rate of its capability class. Longer than the
#: slowest such phone's gap between scans (the dataset's iPhone 12 Pro: up to 185 s).
STABLE_MEMORY_S: Final = 300.0
#: Open scans at most: a flood of forged addresses cannot grow memory past this (the
#: oldest open scans close early instead).
MAX_OPEN_SCANS: Final = 4096


@dataclass(frozen=True, slots=True)
class Scan:
    """A closed scan: one phone's burst of probe requests, as far as grouping can tell."""

    start: float
    end: float
    #: The capability class most of its frames carried.
    klass: int
    frames: int
    #: Distinct addresses it used.
    addresses: int
    #: Its strongest RSSI (None: no frame carried one).
    rssi: float | None
    #: Set when one of its addresses was heard in an earlier scan (within
    #: `STABLE_MEMORY_S`): a number standing for that address, equal for the scans of one
    #: address in this process (the address hash itself, already salted per process).
    stable: int | None = None


class _OpenScan:
    __slots__ = ("addresses", "classes", "end", "frames", "rssi", "sequence", "start")

    def __init__(self, frame: ProbeFrame) -> None:
        self.start = self.end = frame.at
        self.classes: dict[int, int] = {}
        self.addresses: set[int] = set()
        self.frames = 0
        self.sequence = frame.sequence
        self.rssi: float | None = None

    def add(self, frame: ProbeFrame) -> None:
        at = frame.at
        if at > self.end:
            self.end = at
        elif at < self.start:  # radios deliver slightly out of order
            self.start = at
        self.classes[frame.klass] = self.classes.get(frame.klass, 0) + 1
        self.addresses.add(frame.address)
        self.frames += 1
        self.sequence = frame.sequence
        rssi = frame.rssi
        if rssi is not None and (self.rssi is None or rssi > self.rssi):
            self.rssi = rssi

    def closed(self, stable: int | None = None) -> Scan:
        klass = max(self.classes, key=self.classes.__getitem__)
        return Scan(self.start, self.end, klass, self.frames, len(self.addresses), self.rssi,
                    stable)


@dataclass(slots=True)
class GroupingCounters:
    frames: int = 0
    scans: int = 0
    #: Scans closed early because `MAX_OPEN_SCANS` were open.
    forced: int = 0


class ScanGrouper:
    """Frames in (roughly time-ordered), closed scans out. Not thread-safe."""

    __slots__ = ("_by_address", "_by_class", "_open", "_seen", "counters")

    def __init__(self) -> None:
        self._open: dict[int, _OpenScan] = {}  # by id(), in order of opening
        self._by_address: dict[int, _OpenScan] = {}
        self._by_class: dict[int, _OpenScan] = {}
        #: Addresses of closed scans and when their scan ended (`STABLE_MEMORY_S`), oldest
        #: first.
        self._seen: dict[int, float] = {}
        self.counters = GroupingCounters()

    @property
    def open_scans(self) -> int:
        return len(self._open)

    def add(self, frame: ProbeFrame) -> list[Scan]:
        """Group one frame; returns the scans it forced closed (only past `MAX_OPEN_SCANS`)."""
        self.counters.frames += 1
        at = frame.at
        scan = self._by_address.get(frame.address)
        if scan is not None and at - scan.end > ADDRESS_GAP_S:
            scan = None
        if scan is None:
            scan = self._by_class.get(frame.klass)
            if scan is not None and at - scan.end > SCAN_GAP_S and not _continues(scan, frame):
                scan = None
        forced: list[Scan] = []
        if scan is None:
            if len(self._open) >= MAX_OPEN_SCANS:
                oldest = next(iter(self._open.values()))
                forced.append(self._close(oldest))
                self.counters.forced += 1
            scan = _OpenScan(frame)
            self._open[id(scan)] = scan
        scan.add(frame)
        self._by_address[frame.address] = scan
        self._by_class[frame.klass] = scan
        return forced

    def close_due(self, now: float) -> list[Scan]:
        """Close the scans silent for `ADDRESS_GAP_S` by `now`, oldest first."""
        due = [scan for scan in self._open.values() if now - scan.end > ADDRESS_GAP_S]
        return [self._close(scan) for scan in due]

    def close_all(self) -> list[Scan]:
        return [self._close(scan) for scan in list(self._open.values())]

    def _close(self, scan: _OpenScan) -> Scan:
        del self._open[id(scan)]
        for address in scan.addresses:
            if self._by_address.get(address) is scan:
                del self._by_address[address]
        for klass in scan.classes:
            if self._by_class.get(klass) is scan:
                del self._by_class[klass]
        self.counters.scans += 1
        seen, end = self._seen, scan.end
        while seen:
            address, at = next(iter(seen.items()))
            if end - at <= STABLE_MEMORY_S:
                break
            del seen[address]
        stable = min((address for address in scan.addresses if address in seen), default=None)
        for address in scan.addresses:
            seen.pop(address, None)
            seen[address] = end
        return scan.closed(stable)


def _continues(scan: _OpenScan, frame: ProbeFrame) -> bool:
    """Whether `frame`'s sequence number follows the scan's last one closely enough (and
    soon enough) to be the same phone's counter."""
    if frame.at - scan.end > ADDRESS_GAP_S:
        return False
    step = (frame.sequence - scan.sequence) % SEQUENCE_MODULO
    return 0 < step <= SEQUENCE_STEP
