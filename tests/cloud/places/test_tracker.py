"""Enter, dwell and exit from location reports: hysteresis with the accuracy disc, dwell
timing, operating hours, overlapping geofences and geofences changing underneath."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.places.geofences import Circle, Geofence
from cloud.places.hours import OpeningInterval, OperatingHours, Weekday
from cloud.places.index import GeofenceRegistry
from cloud.places.tracker import (
    DEFAULT_SILENCE_EXIT_S,
    GeofenceTracker,
    GeofenceTransition,
    LocationReport,
)
from cloud.places.validation import PlaceError
from shared.presence import Transition
from tests.cloud.places.factories import TENANT, at_offset, geofence, random_geofences, square

MADRID = (40.4168, -3.7038)
#: A Monday, 12:00 in Madrid.
T0 = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)
ENTER, DWELL, EXIT = Transition.ENTER, Transition.DWELL, Transition.EXIT


def shop(geofence_id: str = "shop", radius_m: float = 100.0, **changes: object) -> Geofence:
    return geofence(geofence_id, Circle(*MADRID, radius_m), store="madrid-01",
                    **changes)  # type: ignore[arg-type]


def report(east_m: float, accuracy_m: float, at: datetime, subject: str = "juan",
           north_m: float = 0.0, tenant: str = TENANT) -> LocationReport:
    lat, lon = at_offset(*MADRID, east_m, north_m)
    return LocationReport(tenant, subject, lat, lon, accuracy_m, at)


def kinds(transitions: Iterable[GeofenceTransition]) -> list[tuple[str, Transition]]:
    return [(transition.geofence_id, transition.kind) for transition in transitions]


def tracker_for(*geofences: Geofence) -> tuple[GeofenceTracker, GeofenceRegistry]:
    registry = GeofenceRegistry(geofences)
    return GeofenceTracker(registry), registry


def test_enter_needs_the_whole_disc_inside_and_exit_needs_it_fully_outside() -> None:
    tracker, _ = tracker_for(shop())
    seconds = iter(range(0, 10_000, 10))

    def update(east_m: float, accuracy_m: float) -> list[tuple[str, Transition]]:
        at = T0 + timedelta(seconds=next(seconds))
        return kinds(tracker.update(report(east_m, accuracy_m, at)))

    assert update(200.0, 10.0) == []               # outside
    assert update(95.0, 20.0) == []                # straddling the border: not yet in
    assert update(0.0, 150.0) == []                # too vague to be sure
    assert update(50.0, 20.0) == [("shop", ENTER)]  # the whole disc inside
    assert update(95.0, 20.0) == []                # straddling: still in
    assert update(0.0, 500.0) == []                # vague but covering the shop: still in
    assert update(130.0, 40.0) == []               # outside, disc still touching: still in
    assert tracker.inside(TENANT, "juan") == {"shop"}
    assert update(130.0, 20.0) == [("shop", EXIT)]  # disc clear of the shop
    assert update(95.0, 20.0) == []                # straddling from outside: stays out
    assert tracker.inside(TENANT, "juan") == frozenset()
    assert len(tracker) == 0  # nothing is kept for subjects who are nowhere


def test_transitions_carry_the_stay() -> None:
    tracker, _ = tracker_for(shop())
    (enter,) = tracker.update(report(10.0, 15.0, T0))
    (leave,) = tracker.update(report(400.0, 25.0, T0 + timedelta(minutes=3)))
    assert enter == GeofenceTransition(TENANT, "juan", "shop", "madrid-01", ENTER, T0, T0, 15.0)
    assert leave == GeofenceTransition(TENANT, "juan", "shop", "madrid-01", EXIT,
                                       T0 + timedelta(minutes=3), T0, 25.0)


def test_dwell_fires_once_per_stay_after_the_threshold() -> None:
    tracker, _ = tracker_for(shop(dwell_after_s=300.0))
    assert kinds(tracker.update(report(0.0, 10.0, T0))) == [("shop", ENTER)]
    assert kinds(tracker.update(report(5.0, 10.0, T0 + timedelta(seconds=299)))) == []
    (dwell,) = tracker.update(report(5.0, 10.0, T0 + timedelta(seconds=300)))
    assert (dwell.kind, dwell.at, dwell.entered_at) == (DWELL, T0 + timedelta(seconds=300), T0)
    assert kinds(tracker.update(report(5.0, 10.0, T0 + timedelta(seconds=900)))) == []
    assert kinds(tracker.tick(T0 + timedelta(hours=1))) == []
    # A new stay dwells again.
    assert kinds(tracker.update(report(500.0, 10.0, T0 + timedelta(seconds=1000)))) == [
        ("shop", EXIT)]
    again = T0 + timedelta(seconds=1100)
    assert kinds(tracker.update(report(0.0, 10.0, again))) == [("shop", ENTER)]
    assert kinds(tracker.tick(again + timedelta(seconds=299))) == []
    (tick_dwell,) = tracker.tick(again + timedelta(seconds=300))
    assert (tick_dwell.kind, tick_dwell.entered_at, tick_dwell.accuracy_m) == (DWELL, again,
                                                                              None)


def test_a_tick_dwell_needs_the_subject_still_inside() -> None:
    tracker, _ = tracker_for(shop(dwell_after_s=300.0))
    tracker.update(report(0.0, 10.0, T0))
    tracker.update(report(300.0, 10.0, T0 + timedelta(seconds=100)))
    assert kinds(tracker.tick(T0 + timedelta(seconds=600))) == []


def test_a_raised_dwell_threshold_applies_to_stays_under_way() -> None:
    tracker, registry = tracker_for(shop(dwell_after_s=300.0))
    tracker.update(report(0.0, 10.0, T0))
    registry.put(shop(dwell_after_s=600.0))
    assert kinds(tracker.tick(T0 + timedelta(seconds=300))) == []
    assert kinds(tracker.tick(T0 + timedelta(seconds=600))) == [("shop", DWELL)]


def daily(opens: str, closes: str) -> OperatingHours:
    return OperatingHours(tuple(OpeningInterval(day, time.fromisoformat(opens),
                                                time.fromisoformat(closes)) for day in Weekday))


def madrid_time(text: str) -> datetime:
    """A wall-clock time in Madrid as an aware instant."""
    return datetime.fromisoformat(text).replace(tzinfo=shop().zone)


def test_no_enter_before_opening_and_the_first_report_after_opening_enters() -> None:
    tracker, _ = tracker_for(shop(hours=daily("09:00", "21:00")))
    assert kinds(tracker.update(report(0.0, 10.0, madrid_time("2024-06-03T08:55")))) == []
    assert len(tracker) == 0
    (enter,) = tracker.update(report(0.0, 10.0, madrid_time("2024-06-03T09:00")))
    assert enter.kind is ENTER
    assert enter.entered_at == madrid_time("2024-06-03T09:00")


def test_exits_fire_after_closing_but_dwells_wait_for_opening() -> None:
    tracker, _ = tracker_for(shop(hours=daily("09:00", "21:00"), dwell_after_s=300.0))
    tracker.update(report(0.0, 10.0, madrid_time("2024-06-03T20:58"), subject="late"))
    tracker.update(report(0.0, 10.0, madrid_time("2024-06-03T20:50"), subject="leaver"))
    assert kinds(tracker.update(report(400.0, 10.0, madrid_time("2024-06-03T21:10"),
                                       subject="leaver"))) == [("shop", EXIT)]
    # "late" is due to dwell at 21:03, but the shop closed at 21:00.
    assert kinds(tracker.tick(madrid_time("2024-06-03T21:03"))) == []
    assert kinds(tracker.update(report(0.0, 10.0, madrid_time("2024-06-03T21:30"),
                                       subject="late"))) == []
    assert kinds(tracker.tick(madrid_time("2024-06-03T23:00"))) == []
    # Still there (reporting) when the shop opens: the dwell fires at the first tick.
    tracker.update(report(0.0, 10.0, madrid_time("2024-06-04T08:30"), subject="late"))
    assert kinds(tracker.tick(madrid_time("2024-06-04T08:59"))) == []
    (dwell,) = tracker.tick(madrid_time("2024-06-04T09:00"))
    assert (dwell.subject, dwell.kind) == ("late", DWELL)


def test_opening_hours_follow_the_spring_dst_change() -> None:
    """09:00 in Madrid is 08:00 UTC on Saturday 30 March 2024 and 07:00 UTC on Sunday."""
    tracker, _ = tracker_for(shop(hours=daily("09:00", "21:00")))
    saturday = datetime(2024, 3, 30, 7, 30, tzinfo=UTC)  # 08:30 CET: closed
    sunday = datetime(2024, 3, 31, 7, 30, tzinfo=UTC)  # 09:30 CEST: open
    assert kinds(tracker.update(report(0.0, 10.0, saturday, subject="a"))) == []
    assert kinds(tracker.update(report(0.0, 10.0, sunday, subject="b"))) == [("shop", ENTER)]


def test_overnight_hours_across_the_dst_night() -> None:
    """A bar open Saturday 22:00 to 06:00, on the night the clocks go forward."""
    bar = shop("bar", hours=OperatingHours((OpeningInterval(Weekday.SAT, time(22), time(6)),)))
    tracker, _ = tracker_for(bar)
    assert kinds(tracker.update(report(0.0, 10.0, datetime(2024, 3, 30, 20, 59, tzinfo=UTC),
                                       subject="early"))) == []  # 21:59 CET
    assert kinds(tracker.update(report(0.0, 10.0, datetime(2024, 3, 31, 3, 30, tzinfo=UTC),
                                       subject="night"))) == [("bar", ENTER)]  # 05:30 CEST
    assert kinds(tracker.update(report(0.0, 10.0, datetime(2024, 3, 31, 4, 30, tzinfo=UTC),
                                       subject="morning"))) == []  # 06:30 CEST


def test_overlapping_geofences_are_tracked_apart() -> None:
    """A store inside a mall: entering the store enters both; leaving the store keeps the
    shopper in the mall."""
    mall = geofence("mall", square(*MADRID, 200.0), store="mall", dwell_after_s=600.0)
    store = geofence("store", Circle(*MADRID, 40.0), store="madrid-01", dwell_after_s=120.0)
    tracker, _ = tracker_for(mall, store)
    assert kinds(tracker.update(report(0.0, 10.0, T0))) == [("mall", ENTER), ("store", ENTER)]
    assert kinds(tracker.tick(T0 + timedelta(seconds=120))) == [("store", DWELL)]
    assert kinds(tracker.update(report(120.0, 10.0, T0 + timedelta(seconds=200)))) == [
        ("store", EXIT)]
    assert kinds(tracker.update(report(0.0, 5.0, T0 + timedelta(seconds=600)))) == [
        ("store", ENTER), ("mall", DWELL)]
    assert kinds(tracker.update(report(1_000.0, 5.0, T0 + timedelta(seconds=700)))) == [
        ("mall", EXIT), ("store", EXIT)]


def test_a_removed_geofence_exits_at_the_next_report() -> None:
    tracker, registry = tracker_for(shop(), shop("kiosk", radius_m=300.0))
    tracker.update(report(0.0, 10.0, T0))
    registry.remove(TENANT, "shop")
    (leave,) = tracker.update(report(0.0, 10.0, T0 + timedelta(seconds=30)))
    assert (leave.geofence_id, leave.kind, leave.at) == ("shop", EXIT,
                                                         T0 + timedelta(seconds=30))
    assert tracker.inside(TENANT, "juan") == {"kiosk"}


def test_a_removed_geofence_exits_at_the_next_tick_for_silent_subjects() -> None:
    tracker, registry = tracker_for(shop(), shop("kiosk", radius_m=300.0))
    tracker.update(report(0.0, 10.0, T0, subject="a"))
    tracker.update(report(0.0, 10.0, T0, subject="b"))
    assert kinds(tracker.tick(T0 + timedelta(seconds=10))) == []
    registry.remove(TENANT, "shop")
    exits = tracker.tick(T0 + timedelta(seconds=20))
    assert [(t.subject, t.geofence_id, t.kind, t.at) for t in exits] == [
        ("a", "shop", EXIT, T0 + timedelta(seconds=20)),
        ("b", "shop", EXIT, T0 + timedelta(seconds=20))]
    assert kinds(tracker.tick(T0 + timedelta(seconds=30))) == []


def test_a_moved_geofence_is_judged_by_its_new_shape() -> None:
    tracker, registry = tracker_for(shop())
    tracker.update(report(0.0, 10.0, T0))
    registry.put(geofence("shop", Circle(*at_offset(*MADRID, 2_000.0, 0.0), 100.0)))
    assert kinds(tracker.tick(T0 + timedelta(seconds=5))) == []  # the id still exists
    assert kinds(tracker.update(report(0.0, 10.0, T0 + timedelta(seconds=10)))) == [
        ("shop", EXIT)]


def test_silent_subjects_exit_and_are_forgotten() -> None:
    tracker, _ = tracker_for(shop())
    tracker.update(report(0.0, 10.0, T0, subject="quiet"))
    tracker.update(report(0.0, 10.0, T0, subject="chatty"))
    silence = timedelta(seconds=DEFAULT_SILENCE_EXIT_S)
    tracker.update(report(0.0, 10.0, T0 + silence / 2, subject="chatty"))
    assert [t.subject for t in tracker.tick(T0 + silence - timedelta(seconds=1))
            if t.kind is EXIT] == []
    exits = [t for t in tracker.tick(T0 + silence) if t.kind is EXIT]
    assert [(t.subject, t.at, t.accuracy_m) for t in exits] == [("quiet", T0 + silence, None)]
    assert len(tracker) == 1
    assert [t.subject for t in tracker.tick(T0 + silence * 1.5) if t.kind is EXIT] == ["chatty"]
    assert len(tracker) == 0


def test_a_report_older_than_the_last_is_ignored_and_counted() -> None:
    tracker, _ = tracker_for(shop())
    tracker.update(report(0.0, 10.0, T0 + timedelta(seconds=10)))
    assert tracker.update(report(900.0, 10.0, T0 + timedelta(seconds=5))) == []
    assert tracker.inside(TENANT, "juan") == {"shop"}
    assert tracker.counters.out_of_order == 1
    assert (tracker.counters.reports, tracker.counters.enters) == (1, 1)


def test_tenants_and_subjects_are_kept_apart() -> None:
    tracker, _ = tracker_for(shop(), shop(tenant="other"))
    assert kinds(tracker.update(report(0.0, 10.0, T0, tenant="other"))) == [("shop", ENTER)]
    assert tracker.inside(TENANT, "juan") == frozenset()
    assert tracker.inside("other", "juan") == {"shop"}
    assert kinds(tracker.update(report(0.0, 10.0, T0, subject="ana"))) == [("shop", ENTER)]


def test_bad_input_is_refused_with_place_error() -> None:
    tracker, _ = tracker_for(shop())
    with pytest.raises(PlaceError) as naive:
        LocationReport(TENANT, "juan", 40.0, -3.0, 10.0, datetime(2024, 6, 3, 12, 0))
    assert naive.value.field == "at"
    with pytest.raises(PlaceError) as accuracy:
        LocationReport(TENANT, "juan", 40.0, -3.0, 6_000.0, T0)
    assert accuracy.value.field == "accuracy_m"
    with pytest.raises(PlaceError):
        tracker.update({"lat": 40.0})  # type: ignore[arg-type]
    with pytest.raises(PlaceError):
        tracker.update_many([report(0.0, 1.0, T0), "nope"])  # type: ignore[list-item]
    with pytest.raises(PlaceError) as tick:
        tracker.tick(datetime(2024, 6, 3, 12, 0))
    assert tick.value.field == "now"
    with pytest.raises(PlaceError):
        GeofenceTracker(GeofenceRegistry(), silence_exit_s=0.0)


def random_walk(rng: random.Random, subjects: int, steps: int) -> list[LocationReport]:
    """Subjects wandering among shops, reporting with varying accuracy, a few out of order."""
    positions = {f"s{n}": (rng.uniform(-800, 800), rng.uniform(-800, 800))
                 for n in range(subjects)}
    reports = []
    at = T0
    for _ in range(steps):
        subject = rng.choice(sorted(positions))
        east, north = positions[subject]
        east += rng.gauss(0, 60)
        north += rng.gauss(0, 60)
        positions[subject] = (east, north)
        at += timedelta(seconds=rng.uniform(0, 40))
        when = at - timedelta(seconds=600) if rng.random() < 0.03 else at
        tenant = TENANT if rng.random() < 0.9 else "other"
        reports.append(report(east, rng.choice([3.0, 15.0, 40.0, 150.0, 900.0]), when,
                              subject=subject, north_m=north, tenant=tenant))
    return reports


def walk_geofences(rng: random.Random) -> list[Geofence]:
    ours = random_geofences(rng, 40, *MADRID, 700.0)
    theirs = [Geofence(g.id, "other", g.store, g.shape, 120.0, g.timezone, daily("09:00", "21:00"))
              for g in random_geofences(rng, 20, *MADRID, 700.0)]
    return [*ours, *theirs]


def test_update_many_decides_exactly_what_update_does() -> None:
    rng = random.Random(8)
    geofences = walk_geofences(rng)
    reports = random_walk(rng, 30, 3_000)
    one, _ = tracker_for(*geofences)
    many, _ = tracker_for(*geofences)
    singles: list[GeofenceTransition] = []
    batches: list[GeofenceTransition] = []
    for start in range(0, len(reports), 250):
        chunk = reports[start:start + 250]
        for item in chunk:
            singles.extend(one.update(item))
        singles.extend(one.tick(chunk[-1].at))
        batches.extend(many.update_many(chunk))
        batches.extend(many.tick(chunk[-1].at))
    assert singles == batches
    assert {t.kind for t in singles} == {ENTER, DWELL, EXIT}
    assert one.counters == many.counters
    assert one.counters.out_of_order > 0


def assert_well_formed(transitions: list[GeofenceTransition]) -> None:
    """Per (tenant, subject, geofence): enter, at most one dwell, exit, and again."""
    open_stays: dict[tuple[str, str, str], tuple[datetime, bool]] = {}
    for transition in transitions:
        key = (transition.tenant, transition.subject, transition.geofence_id)
        if transition.kind is ENTER:
            assert key not in open_stays
            assert transition.entered_at == transition.at
            open_stays[key] = (transition.at, False)
            continue
        assert key in open_stays, transition
        entered_at, dwelt = open_stays[key]
        assert transition.entered_at == entered_at
        assert transition.at >= entered_at
        if transition.kind is DWELL:
            assert not dwelt
            open_stays[key] = (entered_at, True)
        else:
            del open_stays[key]


FUZZ_GEOFENCES = walk_geofences(random.Random(9))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(
    st.sampled_from(["s1", "s2", "s3"]),
    st.floats(-900, 900), st.floats(-900, 900),
    st.one_of(st.just(0.0), st.floats(0, 5_000)),
    st.integers(-120, 600),
    st.booleans(),
    st.sampled_from(["remove", "put", "none", "none", "none"]),
), max_size=60))
def test_random_report_sequences_give_well_formed_transitions(
    steps: list[tuple[str, float, float, float, int, bool, str]],
) -> None:
    """Random walks (with reports out of order, ticks, and geofences removed and re-added
    on the way) never raise, and every stay reads enter -> dwell? -> exit."""
    registry = GeofenceRegistry(FUZZ_GEOFENCES)
    tracker = GeofenceTracker(registry, silence_exit_s=1_800.0)
    transitions: list[GeofenceTransition] = []
    at = T0
    mine = [g for g in FUZZ_GEOFENCES if g.tenant == TENANT]
    for number, (subject, east, north, accuracy, step_s, tick, change) in enumerate(steps):
        at += timedelta(seconds=step_s)
        if change == "remove":
            registry.remove(TENANT, mine[number % len(mine)].id)
        elif change == "put":
            registry.put(mine[number % len(mine)])
        transitions.extend(tracker.update(report(east, accuracy, at, subject=subject,
                                                 north_m=north)))
        if tick:
            transitions.extend(tracker.tick(at))
    transitions.extend(tracker.tick(at + timedelta(days=1)))
    assert_well_formed(transitions)
    assert len(tracker) == 0  # a day of silence ends every stay


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=8), st.text(max_size=8),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.none()),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text()),
       st.one_of(st.datetimes(), st.datetimes(timezones=st.just(UTC)), st.none()))
def test_any_report_is_refused_with_place_error_or_tracked(
    tenant: str, subject: str, lat: object, lon: object, accuracy: object, at: object,
) -> None:
    tracker = FUZZ_TRACKER
    try:
        built = LocationReport(tenant, subject, lat, lon, accuracy, at)  # type: ignore[arg-type]
    except PlaceError:
        return
    transitions = tracker.update(built)
    assert all(t.subject == subject for t in transitions)


FUZZ_TRACKER = GeofenceTracker(GeofenceRegistry(FUZZ_GEOFENCES))
