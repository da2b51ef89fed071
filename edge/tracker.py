"""Presence tracking: turns a stream of pseudonymous sightings into enter/dwell/exit events.

A phone advertises many times a second; the cloud wants to know when it arrived, that it
is still there every few minutes, and when it left. Per device the tracker smooths RSSI
(exponential moving average), ignores sightings below the RSSI floor, declares an enter
after N sightings within a window, a dwell every `dwell_interval_s`, and an exit after
a silence longer than the device's exit timeout: `exit_after_s`, or, once the device has
been heard in bursts some time apart, a few times its median gap between bursts, up to
`max_exit_after_s` (`edge.timeouts`: a phone probing every two minutes stays one visit;
a device heard only through probe requests starts from twice `exit_after_s`).
Time is the sightings' own clock (`Sighting.at`): a replay gives the same events at any
speed. Live, the agent also calls `tick()` with the wall
clock so devices that fall silent still exit.

Devices are kept in a dict in order of last sighting (each sighting moves its device to
the end), so finding the silent ones never scans the devices that are still present. A
device silent longer than `exit_after_s` whose own timeout is longer moves to a second
dict, *lingering*, with its deadline in a heap: the sweep reads only the devices that
have just fallen silent and the deadlines that are due. A device that
left is remembered for `max_exit_after_s` as its last sighting and gaps alone (a *ghost*,
in memory only): if it comes back, the gap it was away for is learnt, so its next visit
already has its timeout.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edge.pseudonymize import PseudonymousSighting
from edge.settings import TrackerSettings
from edge.timeouts import (
    BURST_GAP_S,
    GAP_MULTIPLE,
    GAPS_KEPT,
    MAX_EXIT_AFTER_S,
    PROBE_FIRST_EXIT_MULTIPLE,
    median_gap,
)
from shared.identifiers import IdentifierKind
from shared.presence import PresenceEvent, PseudonymScope, Transition, make_event_id
from shared.status import GatewayConfig, ZoneThreshold

#: How often (in sighting-clock seconds) silent devices are looked for between ticks:
#: often enough that an exit is reported within a second of becoming due.
SWEEP_INTERVAL_S = 1.0
#: RSSI reported for a device that was only ever seen without a signal strength (a
#: hostapd association): the weakest value the schema allows, which reads as "unknown".
UNKNOWN_RSSI_DBM = -127.0
#: The strongest RSSI the schema accepts; a reading above it is a driver glitch.
MAX_RSSI_DBM = 20.0
#: Readings outside this open range (and NaN) are not measurements: the sighting still
#: counts as presence, but its RSSI is ignored so it cannot poison the average.
PLAUSIBLE_RSSI_MIN, PLAUSIBLE_RSSI_MAX = -200.0, 100.0
#: Devices remembered after they left (their last sighting and gaps, for
#: `max_exit_after_s`): a busy street's worth of departures in ten minutes, and no more
#: (the oldest are forgotten first).
MAX_GHOSTS = 50_000


@dataclass(frozen=True, slots=True)
class Identity:
    tenant: str
    store: str
    gateway: str


@dataclass(frozen=True, slots=True)
class TrackerThresholds:
    rssi_floor: float = -90.0
    smoothing_alpha: float = 0.3
    enter_sightings: int = 2
    enter_window_s: float = 30.0
    dwell_interval_s: float = 300.0
    exit_after_s: float = 120.0
    #: Learn each device's exit timeout from its gaps (`edge.timeouts`), within
    #: [`exit_after_s`, `max_exit_after_s`]; False keeps `exit_after_s` for every device.
    adaptive_exit: bool = True
    max_exit_after_s: float = MAX_EXIT_AFTER_S
    default_zone: str = "store"
    #: Strongest first: a device is in the first zone whose `min_rssi` it reaches.
    zones: tuple[ZoneThreshold, ...] = ()
    max_devices: int = 200_000

    #: The first timeout of a device heard through probe requests (`edge.timeouts`);
    #: derived, one float shared by every such device.
    probe_first_exit_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.zones, key=lambda zone: zone.min_rssi, reverse=True))
        object.__setattr__(self, "zones", ordered)
        object.__setattr__(self, "probe_first_exit_s",
                           PROBE_FIRST_EXIT_MULTIPLE * self.exit_after_s)

    @classmethod
    def from_settings(
        cls, tracker: TrackerSettings, zones: Iterable[ZoneThreshold]
    ) -> TrackerThresholds:
        return cls(
            rssi_floor=tracker.rssi_floor,
            smoothing_alpha=tracker.smoothing_alpha,
            enter_sightings=tracker.enter_sightings,
            enter_window_s=tracker.enter_window_s,
            dwell_interval_s=tracker.dwell_interval_s,
            exit_after_s=tracker.exit_after_s,
            adaptive_exit=tracker.adaptive_exit,
            max_exit_after_s=tracker.max_exit_after_s,
            default_zone=tracker.default_zone,
            zones=tuple(zones),
            max_devices=tracker.max_devices,
        )

    def with_config(self, config: GatewayConfig) -> TrackerThresholds:
        """These thresholds with whatever the cloud's config sets (None keeps ours)."""
        changes: dict[str, object] = {
            name: value
            for name in ("rssi_floor", "enter_sightings", "enter_window_s",
                         "dwell_interval_s", "exit_after_s")
            if (value := getattr(config, name)) is not None
        }
        if config.zones is not None:
            changes["zones"] = tuple(config.zones)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def exit_limit(self, learnt: float | None) -> float:
        """A device's exit timeout: `exit_after_s` until it learnt one (`learnt`, a multiple
        of its median gap), then that within [`exit_after_s`, `max_exit_after_s`]."""
        if learnt is None or not self.adaptive_exit:
            return self.exit_after_s
        return min(max(self.exit_after_s, self.max_exit_after_s), max(self.exit_after_s, learnt))

    def zone_for(self, rssi: float | None) -> str:
        if rssi is not None:
            for zone in self.zones:
                if rssi >= zone.min_rssi:
                    return zone.zone
        return self.default_zone


class _Device:
    """Per-device state; slotted because a busy store tracks a hundred thousand of these.

    Nothing derivable is stored: the pseudonym is the device's key in the tracker's
    dict, the key id is the pseudonym's prefix, the scope follows from `randomized`,
    the next dwell is due one interval after the last one (`dwell_seq`), and a device
    has entered once `recent` (its pending sightings) is gone. Every slot is 8 bytes,
    every float 24, times the devices tracked. `gaps` (whole seconds: small ints are
    shared objects) and `timeout` stay the shared empty tuple and None until the device
    is heard in a second burst.
    """

    __slots__ = ("dwell_seq", "first_seen", "gaps", "kind", "last_seen", "randomized",
                 "recent", "rssi", "sightings", "timeout")

    def __init__(self, sighting: PseudonymousSighting) -> None:
        self.kind = sighting.kind
        self.randomized = sighting.randomized
        self.first_seen = sighting.at
        self.last_seen = sighting.at
        self.rssi: float | None = None
        self.sightings = 0
        self.recent: list[float] | None = []
        self.dwell_seq = 0
        #: Recent gaps between bursts, in whole seconds, and the exit timeout they give
        #: (`GAP_MULTIPLE` x their median, before the thresholds' bounds).
        self.gaps: tuple[int, ...] = ()
        self.timeout: float | None = None

    def learn(self, gaps: tuple[int, ...], gap: float) -> None:
        """Add `gap` to `gaps` (a gap between bursts) and derive the timeout."""
        learnt = (*gaps, round(gap))[-GAPS_KEPT:]
        self.gaps = learnt
        self.timeout = GAP_MULTIPLE * median_gap(learnt)


@dataclass(slots=True)
class TrackerCounters:
    sightings: int = 0
    below_floor: int = 0
    bad_rssi: int = 0
    enters: int = 0
    dwells: int = 0
    exits: int = 0
    #: Devices pushed out by `max_devices` (an exit is still reported for them).
    evicted: int = 0
    #: Devices that came back after leaving while still remembered (their gap was learnt).
    returned: int = 0

    @property
    def events(self) -> int:
        return self.enters + self.dwells + self.exits

    @property
    def reduction_ratio(self) -> float:
        """Sightings per event: how much the tracker spares the uplink."""
        return self.sightings / self.events if self.events else float(self.sightings)


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _reported_rssi(rssi: float | None) -> float:
    if rssi is None:
        return UNKNOWN_RSSI_DBM
    # A tenth of a dB is finer than any radio measures; more digits only cost bytes.
    return round(min(max(rssi, UNKNOWN_RSSI_DBM), MAX_RSSI_DBM), 1)


_WIFI_PROBE = IdentifierKind.WIFI_PROBE

#: Told about a sighting that could not be tracked (and the error), so a batch goes on.
TrackErrorHandler = Callable[[PseudonymousSighting, Exception], None]


class Tracker:
    """Per-device presence state machine. Not thread-safe: the agent calls it from its loop."""

    def __init__(self, identity: Identity, thresholds: TrackerThresholds) -> None:
        self.identity = identity
        self.thresholds = thresholds
        self.counters = TrackerCounters()
        self._devices: dict[str, _Device] = {}
        #: Devices silent past `exit_after_s` but within their own timeout, and their
        #: deadlines (deadline, pseudonym): an entry whose device moved on is skipped.
        self._lingering: dict[str, _Device] = {}
        self._deadlines: list[tuple[float, str]] = []
        #: Devices that left: pseudonym -> (last sighting, gaps), in order of leaving.
        self._ghosts: dict[str, tuple[float, tuple[int, ...]]] = {}
        self._clock = 0.0
        self._next_sweep = 0.0

    @property
    def devices_tracked(self) -> int:
        return len(self._devices) + len(self._lingering)

    @property
    def clock(self) -> float:
        """The latest sighting or tick time seen."""
        return self._clock

    def apply(self, config: GatewayConfig) -> None:
        """Apply the cloud's thresholds and zones from now on."""
        self.thresholds = self.thresholds.with_config(config)

    def observe(self, sighting: PseudonymousSighting) -> list[PresenceEvent]:
        """Feed one sighting; returns the events it causes (usually none)."""
        return self.observe_many((sighting,))

    def observe_many(
        self, sightings: Iterable[PseudonymousSighting], on_error: TrackErrorHandler | None = None
    ) -> list[PresenceEvent]:
        """Feed sightings in order; returns the events they cause, in order.

        The same as observing them one at a time, but this runs for every sighting a
        gateway hears: thresholds and state are looked up once per batch, not once per
        sighting. A sighting that fails (garbage a source let through) goes to
        `on_error` and the batch goes on; without `on_error` the error propagates.
        """
        events: list[PresenceEvent] = []
        counters = self.counters
        devices = self._devices
        lingering = self._lingering
        thresholds = self.thresholds
        rssi_floor = thresholds.rssi_floor
        alpha = thresholds.smoothing_alpha
        exit_after_s = thresholds.exit_after_s
        adaptive = thresholds.adaptive_exit
        #: Silences up to this need no thought: within a burst, and within every timeout.
        quiet = min(exit_after_s, BURST_GAP_S) if adaptive else exit_after_s
        dwell_interval_s = thresholds.dwell_interval_s
        for sighting in sightings:
            try:
                at = sighting.at
                counters.sightings += 1
                if at > self._clock:
                    self._clock = at
                    if at >= self._next_sweep:
                        self._sweep(at, events)
                rssi = sighting.rssi
                if rssi is not None:
                    if not PLAUSIBLE_RSSI_MIN < rssi < PLAUSIBLE_RSSI_MAX:
                        counters.bad_rssi += 1  # NaN, infinities, driver garbage: presence only
                        rssi = None
                    elif rssi < rssi_floor:
                        counters.below_floor += 1
                        continue
                key = sighting.pseudonym
                device = devices.pop(key, None)  # re-inserted: the dict stays in sighting order
                if device is None and lingering:
                    device = lingering.pop(key, None)
                if device is None:
                    device = self._arrive(key, None, sighting, events)
                elif (silence := at - device.last_seen) > quiet:
                    # A new burst: a new visit if silent longer than the device's timeout,
                    # else one more gap to learn its rhythm from.
                    if silence > thresholds.exit_limit(device.timeout):
                        device = self._arrive(key, device, sighting, events)
                    elif adaptive and silence > BURST_GAP_S:
                        device.learn(device.gaps, silence)
                devices[key] = device
                if rssi is not None:
                    smoothed = device.rssi
                    device.rssi = rssi if smoothed is None else smoothed + alpha * (rssi - smoothed)
                device.sightings += 1
                if at > device.last_seen:
                    device.last_seen = at
                recent = device.recent
                if recent is not None:
                    self._maybe_enter(key, device, recent, at, events)
                elif at - device.first_seen >= (device.dwell_seq + 1) * dwell_interval_s:
                    self._dwell(key, device, events)
            except Exception as error:
                if on_error is None:
                    raise
                on_error(sighting, error)
        return events

    def _arrive(
        self, key: str, silent: _Device | None, sighting: PseudonymousSighting,
        events: list[PresenceEvent],
    ) -> _Device:
        """A new visit: the device was unknown, or silent too long (that visit ended).

        A device that left not long ago (still tracked, or remembered as a ghost) brings
        its gaps, and the gap it was away for, to the new visit.
        """
        thresholds = self.thresholds
        history: tuple[float, tuple[int, ...]] | None = None
        if silent is not None:
            self._leave(key, silent, events)
            history = (silent.last_seen, silent.gaps)
        elif self._ghosts:
            history = self._ghosts.pop(key, None)
        if len(self._devices) + len(self._lingering) >= thresholds.max_devices:
            self._evict_oldest(events)
        device = _Device(sighting)
        if thresholds.adaptive_exit:
            if sighting.kind is _WIFI_PROBE:
                device.timeout = thresholds.probe_first_exit_s  # until its gaps are known
            if history is not None:
                last_seen, gaps = history
                gap = sighting.at - last_seen
                if BURST_GAP_S < gap <= thresholds.max_exit_after_s:
                    device.learn(gaps, gap)
                    self.counters.returned += 1
        return device

    def tick(self, now: float) -> list[PresenceEvent]:
        """Advance the clock without a sighting (live capture): reports due exits."""
        events: list[PresenceEvent] = []
        if now > self._clock:
            self._clock = now
        self._sweep(self._clock, events)
        return events

    def close(self) -> list[PresenceEvent]:
        """Every device leaves (end of a replay, shutdown); the tracker is empty afterwards."""
        events: list[PresenceEvent] = []
        devices, self._devices = {**self._lingering, **self._devices}, {}
        self._lingering, self._deadlines, self._ghosts = {}, [], {}
        for key, device in devices.items():
            self._leave(key, device, events)
        return events

    def _maybe_enter(
        self, key: str, device: _Device, recent: list[float], at: float,
        events: list[PresenceEvent],
    ) -> None:
        thresholds = self.thresholds
        recent.append(at)
        if len(recent) > thresholds.enter_sightings:
            del recent[0]
        if len(recent) < thresholds.enter_sightings:
            return
        start = min(recent)
        if at - start > thresholds.enter_window_s:
            return
        device.recent = None
        device.first_seen = start
        device.sightings = len(recent)
        self.counters.enters += 1
        events.append(self._event(key, device, Transition.ENTER, 0))

    def _dwell(self, key: str, device: _Device, events: list[PresenceEvent]) -> None:
        # The sequence is the number of whole intervals present: after a long gap there
        # is one dwell, not a burst of catch-up dwells, and the next is an interval on.
        device.dwell_seq = int((device.last_seen - device.first_seen)
                               // self.thresholds.dwell_interval_s)
        self.counters.dwells += 1
        events.append(self._event(key, device, Transition.DWELL, device.dwell_seq))

    def _leave(self, key: str, device: _Device, events: list[PresenceEvent]) -> None:
        if device.recent is None:  # entered
            self.counters.exits += 1
            events.append(self._event(key, device, Transition.EXIT, 0))

    def _sweep(self, now: float, events: list[PresenceEvent]) -> None:
        """Devices silent past their timeout leave. Ordered by last sighting, the devices
        are read from the oldest until one was heard within `exit_after_s` (up to sources
        that deliver slightly out of order): those whose own timeout is longer go on
        lingering until their deadline, the others leave now."""
        self._next_sweep = now + SWEEP_INTERVAL_S
        thresholds = self.thresholds
        silent_since = now - thresholds.exit_after_s
        devices = self._devices
        while devices:
            key = next(iter(devices))
            device = devices[key]
            last_seen = device.last_seen
            if last_seen >= silent_since:
                break
            del devices[key]
            limit = thresholds.exit_limit(device.timeout)
            if now - last_seen > limit:
                self._depart(key, device, events)
            else:
                self._lingering[key] = device
                heapq.heappush(self._deadlines, (last_seen + limit, key))
        deadlines, lingering = self._deadlines, self._lingering
        while deadlines and deadlines[0][0] < now:
            _due, key = heapq.heappop(deadlines)
            found = lingering.get(key)
            if found is not None and now - found.last_seen > thresholds.exit_limit(found.timeout):
                del lingering[key]
                self._depart(key, found, events)
        if self._ghosts:
            self._forget_ghosts(now)

    def _depart(self, key: str, device: _Device, events: list[PresenceEvent]) -> None:
        """Silent past its timeout: it leaves, and is remembered as a ghost if it entered."""
        self._leave(key, device, events)
        if device.recent is None and self.thresholds.adaptive_exit:
            self._ghosts[key] = (device.last_seen, device.gaps)

    def _forget_ghosts(self, now: float) -> None:
        """Ghosts older than `max_exit_after_s`, and the oldest beyond `MAX_GHOSTS`, go."""
        ghosts = self._ghosts
        oldest = now - self.thresholds.max_exit_after_s
        while ghosts:
            key = next(iter(ghosts))
            if ghosts[key][0] >= oldest and len(ghosts) <= MAX_GHOSTS:
                break
            del ghosts[key]

    def _evict_oldest(self, events: list[PresenceEvent]) -> None:
        """The longest silent goes: a lingering device first (their heap entry is skipped)."""
        devices = self._lingering or self._devices
        key = next(iter(devices))
        self.counters.evicted += 1
        self._leave(key, devices.pop(key), events)

    def _event(
        self, pseudonym: str, device: _Device, transition: Transition, sequence: int
    ) -> PresenceEvent:
        identity = self.identity
        first_seen = _utc(device.first_seen)
        return PresenceEvent(
            event_id=make_event_id(
                tenant=identity.tenant, store=identity.store, gateway=identity.gateway,
                pseudonym=pseudonym, transition=transition, first_seen=first_seen,
                sequence=sequence,
            ),
            tenant=identity.tenant,
            store=identity.store,
            gateway=identity.gateway,
            pseudonym=pseudonym,
            key_id=pseudonym.partition(":")[0],
            scope=PseudonymScope.DAILY if device.randomized else PseudonymScope.STABLE,
            kind=device.kind,
            randomized=device.randomized,
            transition=transition,
            zone=self.thresholds.zone_for(device.rssi),
            rssi=_reported_rssi(device.rssi),
            first_seen=first_seen,
            last_seen=_utc(device.last_seen),
            dwell_s=max(0.0, device.last_seen - device.first_seen),
            sightings=device.sightings,
        )


def feed(tracker: Tracker, sightings: Iterable[PseudonymousSighting]) -> list[PresenceEvent]:
    """All events a sequence of sightings causes (tests, benchmarks, offline analysis)."""
    return tracker.observe_many(sightings)


__all__ = [
    "SWEEP_INTERVAL_S",
    "UNKNOWN_RSSI_DBM",
    "Identity",
    "TrackErrorHandler",
    "Tracker",
    "TrackerCounters",
    "TrackerThresholds",
    "feed",
]
