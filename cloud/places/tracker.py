"""Enter, dwell and exit of app users in geofences, from the app's location reports.

A report is a disc: the fix and its accuracy. Deciding on the point alone would make a
phone with a 60 m fix standing 20 m from the door "enter" and "exit" with every report,
so the tracker uses hysteresis:

- enter when the whole disc lies inside the geofence (a fix too vague to be sure is not
  an enter);
- exit only when the disc no longer touches it at all;
- in between (the disc straddles the border) the subject keeps whatever state it had.

A dwell fires once per stay, at the first report or `tick` that comes `dwell_after_s` or
more after the enter while the geofence is open; a transition's `at` is the time of the
report or tick that decided it.

Outside a geofence's operating hours (in the store's time zone) neither enter nor dwell
fires, and no stay begins, so a shopper already inside when the shop opens enters with
their first report after opening; exits always fire.

A subject whose geofence disappears from the index (the admin deleted it) exits it with
its next report, or at the next `tick` after the index changed. A subject silent for
`silence_exit_s` (phone off, permission withdrawn) exits everything at the next `tick`:
without that a stay would never end and its state never be freed. State is kept only for
subjects inside at least one geofence.

Times are the reports' own instants (`at`, aware), not the clock of this process: reports
are processed in each subject's order, and one older than the subject's last is ignored
(counted), since it describes a moment already decided.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cloud.places.geofences import Geofence
from cloud.places.index import NOWHERE, GeofenceIndex, GeofenceRegistry, Location
from cloud.places.validation import (
    PlaceError,
    check_accuracy,
    check_id,
    check_lat_lon,
    check_segment,
)
from shared.presence import Transition

#: Apps report a few times an hour at best when the phone is still; a subject heard from
#: for none of four hours has most likely left (or turned location off) and exits.
DEFAULT_SILENCE_EXIT_S = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class LocationReport:
    """One location fix from the app: `subject` is the customer or device key it came with,
    `accuracy_m` the radius (metres) within which the phone believes it is."""

    tenant: str
    subject: str
    lat: float
    lon: float
    accuracy_m: float
    at: datetime

    def __post_init__(self) -> None:
        check_segment("tenant", self.tenant)
        check_id("subject", self.subject)
        lat, lon = check_lat_lon(self.lat, self.lon)
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        object.__setattr__(self, "accuracy_m", check_accuracy(self.accuracy_m))
        check_aware("at", self.at)


@dataclass(frozen=True, slots=True)
class GeofenceTransition:
    """A subject entered, dwelt in or left a geofence.

    `at` is when it was decided (the report's or the tick's time); `entered_at` is the start
    of the stay it belongs to, the same for its enter, dwell and exit, so (tenant, subject,
    geofence_id, entered_at, kind) identifies a transition when it is processed again.
    `accuracy_m` is that of the deciding report (None when a tick decided).
    """

    tenant: str
    subject: str
    geofence_id: str
    store: str
    kind: Transition
    at: datetime
    entered_at: datetime
    accuracy_m: float | None


@dataclass(frozen=True, slots=True)
class Stay:
    """A subject's stay in one geofence: all the tracker remembers of it, so a caller that
    keeps stays elsewhere (a database) can run the same state machine with `advance`."""

    store: str
    entered_at: datetime
    dwelt: bool = False


@dataclass(slots=True)
class _Subject:
    last_at: datetime
    #: Tells this state from an earlier one of the same subject in the silence queue.
    generation: int
    stays: dict[str, Stay] = field(default_factory=dict)


@dataclass(slots=True)
class TrackerCounters:
    """What the tracker did, for metrics: reports used and ignored, transitions fired."""

    reports: int = 0
    out_of_order: int = 0
    enters: int = 0
    dwells: int = 0
    exits: int = 0


SubjectKey = tuple[str, str]
#: (due, tenant, subject, geofence id, stay start): a dwell to check when `due` passes.
_DwellDue = tuple[datetime, str, str, str, datetime]
#: (due, tenant, subject, generation): a silence to check when `due` passes.
_SilenceDue = tuple[datetime, str, str, int]


class GeofenceTracker:
    """Per-subject stays in the geofences of a `GeofenceRegistry`.

    Not thread-safe: one tracker per worker, fed in order (the registry it reads may be
    changed from other threads at any time).
    """

    def __init__(self, registry: GeofenceRegistry,
                 silence_exit_s: float = DEFAULT_SILENCE_EXIT_S) -> None:
        if not silence_exit_s > 0.0:
            raise PlaceError("silence_exit_s", f"must be > 0 s, got {silence_exit_s!r}")
        self._registry = registry
        self._silence = timedelta(seconds=silence_exit_s)
        self._subjects: dict[SubjectKey, _Subject] = {}
        self._dwell_heap: list[_DwellDue] = []
        self._silence_heap: list[_SilenceDue] = []
        self._generations = itertools.count()
        self._swept_version = registry.current.version
        self.counters = TrackerCounters()

    def __len__(self) -> int:
        """Subjects currently inside at least one geofence."""
        return len(self._subjects)

    def inside(self, tenant: str, subject: str) -> frozenset[str]:
        """Ids of the geofences `subject` is currently in."""
        state = self._subjects.get((tenant, subject))
        return frozenset() if state is None else frozenset(state.stays)

    def update(self, report: LocationReport) -> list[GeofenceTransition]:
        """The transitions `report` causes for its subject: exits, then enters, then dwells,
        each in geofence id order."""
        _check_report(report)
        if self._is_stale(report):
            return []
        index = self._registry.current
        location = index.locate(report.tenant, report.lat, report.lon, report.accuracy_m)
        return self._apply(report, location, index)

    def update_many(self, reports: Sequence[LocationReport]) -> list[GeofenceTransition]:
        """`update` for every report in order, with the geofence lookups done up front in
        one vectorised `GeofenceIndex.locate_many` per tenant (the same answers, several
        times faster: see docs/benchmarks/places.md)."""
        for report in reports:
            _check_report(report)
        index = self._registry.current
        rows_by_tenant: dict[str, list[int]] = {}
        for row, report in enumerate(reports):
            rows_by_tenant.setdefault(report.tenant, []).append(row)
        locations: list[Location] = [NOWHERE] * len(reports)
        for tenant, rows in rows_by_tenant.items():
            pairs = index.locate_many(tenant, [reports[row].lat for row in rows],
                                      [reports[row].lon for row in rows],
                                      [reports[row].accuracy_m for row in rows])
            for row, location in zip(rows, pairs.locations(), strict=True):
                locations[row] = location
        transitions: list[GeofenceTransition] = []
        for report, location in zip(reports, locations, strict=True):
            if not self._is_stale(report):
                transitions.extend(self._apply(report, location, index))
        return transitions

    def _is_stale(self, report: LocationReport) -> bool:
        state = self._subjects.get((report.tenant, report.subject))
        if state is not None and report.at < state.last_at:
            self.counters.out_of_order += 1
            return True
        return False

    def _apply(self, report: LocationReport, location: Location, index: GeofenceIndex
               ) -> list[GeofenceTransition]:
        """The state machine of one report (`advance`), and the queues it feeds."""
        self.counters.reports += 1
        key = (report.tenant, report.subject)
        state = self._subjects.get(key)
        if state is not None:
            state.last_at = report.at
        stays, transitions = advance({} if state is None else state.stays, report, location,
                                     index)
        if stays:
            if state is None:
                state = self._new_subject(key, report.at)
            state.stays = stays
        elif state is not None:
            del self._subjects[key]
        for transition in transitions:
            self._count(transition.kind)
            geofence = index.get(report.tenant, transition.geofence_id)
            if transition.kind is Transition.ENTER and geofence is not None:
                heapq.heappush(self._dwell_heap, (
                    report.at + timedelta(seconds=geofence.dwell_after_s), report.tenant,
                    report.subject, geofence.id, report.at,
                ))
        return transitions

    def tick(self, now: datetime) -> list[GeofenceTransition]:
        """Transitions due at `now` without a new report: exits from geofences removed
        since the last tick, exits of silent subjects, and dwells that came due."""
        check_aware("now", now)
        index = self._registry.current
        transitions: list[GeofenceTransition] = []
        if index.version != self._swept_version:
            transitions.extend(self._exit_removed(index, now))
            self._swept_version = index.version
        transitions.extend(self._exit_silent(now))
        transitions.extend(self._due_dwells(index, now))
        return transitions

    def _exit_removed(self, index: GeofenceIndex, now: datetime) -> list[GeofenceTransition]:
        transitions: list[GeofenceTransition] = []
        for key in sorted(self._subjects):
            state = self._subjects[key]
            for geofence_id in sorted(state.stays):
                if index.get(key[0], geofence_id) is None:
                    stay = state.stays.pop(geofence_id)
                    # Phones' clocks may run ahead of ours: an exit never precedes the
                    # report that last placed the subject inside.
                    transitions.append(self._transition(key, geofence_id, stay,
                                                        Transition.EXIT,
                                                        max(now, state.last_at), None))
            if not state.stays:
                del self._subjects[key]
        return transitions

    def _new_subject(self, key: SubjectKey, at: datetime) -> _Subject:
        state = self._subjects[key] = _Subject(at, next(self._generations))
        heapq.heappush(self._silence_heap, (at + self._silence, *key, state.generation))
        return state

    def _exit_silent(self, now: datetime) -> list[GeofenceTransition]:
        """Pop silence checks that are due; a subject heard from since is pushed back."""
        silent: list[SubjectKey] = []
        while self._silence_heap and self._silence_heap[0][0] <= now:
            _due, tenant, subject, generation = heapq.heappop(self._silence_heap)
            state = self._subjects.get((tenant, subject))
            if state is None or state.generation != generation:
                continue
            if now - state.last_at >= self._silence:
                silent.append((tenant, subject))
            else:
                heapq.heappush(self._silence_heap,
                               (state.last_at + self._silence, tenant, subject, generation))
        transitions: list[GeofenceTransition] = []
        for key in sorted(silent):
            state = self._subjects.pop(key)
            for geofence_id in sorted(state.stays):
                transitions.append(self._transition(key, geofence_id, state.stays[geofence_id],
                                                    Transition.EXIT, now, None))
        return transitions

    def _due_dwells(self, index: GeofenceIndex, now: datetime) -> list[GeofenceTransition]:
        """Pop dwell checks that are due. A check whose stay ended is dropped; one whose
        geofence is closed now, or whose threshold was raised since, is pushed back."""
        transitions: list[GeofenceTransition] = []
        postponed: list[_DwellDue] = []
        while self._dwell_heap and self._dwell_heap[0][0] <= now:
            entry = heapq.heappop(self._dwell_heap)
            _due, tenant, subject, geofence_id, entered_at = entry
            state = self._subjects.get((tenant, subject))
            if state is None:
                continue
            stay = state.stays.get(geofence_id)
            if stay is None or stay.entered_at != entered_at or stay.dwelt:
                continue
            geofence = index.get(tenant, geofence_id)
            if geofence is None:
                continue
            if dwell_due(geofence, stay, now):
                stay = state.stays[geofence_id] = replace(stay, dwelt=True)
                transitions.append(self._transition((tenant, subject), geofence_id, stay,
                                                    Transition.DWELL, now, None))
                continue
            threshold = entered_at + timedelta(seconds=geofence.dwell_after_s)
            if threshold > now:
                heapq.heappush(self._dwell_heap, (threshold, *entry[1:]))
            else:
                postponed.append(entry)  # closed now: look again at the next tick
        for entry in postponed:
            heapq.heappush(self._dwell_heap, entry)
        transitions.sort(key=lambda transition: (transition.tenant, transition.subject,
                                                 transition.geofence_id))
        return transitions

    def _count(self, kind: Transition) -> None:
        if kind is Transition.ENTER:
            self.counters.enters += 1
        elif kind is Transition.DWELL:
            self.counters.dwells += 1
        else:
            self.counters.exits += 1

    def _transition(self, key: SubjectKey, geofence_id: str, stay: Stay, kind: Transition,
                    at: datetime, accuracy_m: float | None) -> GeofenceTransition:
        self._count(kind)
        return GeofenceTransition(key[0], key[1], geofence_id, stay.store, kind, at,
                                  stay.entered_at, accuracy_m)


def dwell_due(geofence: Geofence, stay: Stay, at: datetime) -> bool:
    """Whether `stay` dwells at `at`: not yet dwelt, long enough inside by the geofence's
    current threshold, and the geofence open."""
    return (not stay.dwelt
            and at - stay.entered_at >= timedelta(seconds=geofence.dwell_after_s)
            and geofence.is_active(at))


def advance(stays: Mapping[str, Stay], report: LocationReport, location: Location,
            index: GeofenceIndex) -> tuple[dict[str, Stay], list[GeofenceTransition]]:
    """One report's step of the state machine, without side effects: the subject's stays
    after `report` (which lies at `location` in `index`) and the transitions it causes,
    exits, then enters, then dwells, each in geofence id order.

    `GeofenceTracker` keeps stays in memory; `cloud.places.locations` keeps them in the
    database. Both decide through this function, so they cannot drift apart.
    """
    touching = {geofence.id for geofence in location.intersecting}
    kept: dict[str, Stay] = {}
    transitions: list[GeofenceTransition] = []

    def transition(geofence_id: str, stay: Stay, kind: Transition) -> None:
        transitions.append(GeofenceTransition(
            report.tenant, report.subject, geofence_id, stay.store, kind, report.at,
            stay.entered_at, report.accuracy_m,
        ))

    for geofence_id in sorted(stays):
        if geofence_id in touching:
            kept[geofence_id] = stays[geofence_id]
        else:
            transition(geofence_id, stays[geofence_id], Transition.EXIT)
    for geofence in location.containing:
        if geofence.id in kept or not geofence.is_active(report.at):
            continue
        kept[geofence.id] = Stay(geofence.store, report.at)
        transition(geofence.id, kept[geofence.id], Transition.ENTER)
    for geofence_id in sorted(kept):
        current = index.get(report.tenant, geofence_id)
        if current is not None and dwell_due(current, kept[geofence_id], report.at):
            kept[geofence_id] = replace(kept[geofence_id], dwelt=True)
            transition(geofence_id, kept[geofence_id], Transition.DWELL)
    return kept, transitions


def _check_report(report: object) -> None:
    if not isinstance(report, LocationReport):
        raise PlaceError("report", f"must be a LocationReport, got {type(report).__name__}")


def check_aware(field_name: str, value: object) -> datetime:
    """An aware datetime: a naive one has no defined instant, so it cannot be compared."""
    if not isinstance(value, datetime):
        raise PlaceError(field_name, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise PlaceError(field_name, "must be timezone-aware")
    return value

