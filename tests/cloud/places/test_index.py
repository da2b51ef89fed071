"""The STRtree index answers exactly what a loop over every geofence answers, per tenant,
in single and batch form, and is swapped whole when geofences change."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.places.geofences import Circle
from cloud.places.index import NOWHERE, GeofenceIndex, GeofenceRegistry
from cloud.places.validation import PlaceError
from tests.cloud.places.factories import (
    TENANT,
    at_offset,
    geofence,
    naive_answer,
    random_fixes,
    random_geofences,
    square,
)

REGIONS = [
    pytest.param(40.4168, -3.7038, id="madrid"),
    pytest.param(69.6492, 18.9553, id="tromso"),
    pytest.param(78.2232, 15.6267, id="longyearbyen"),
    pytest.param(89.98, 0.0, id="north-pole"),
    pytest.param(-16.8, 180.0, id="taveuni-antimeridian"),
    pytest.param(65.0, -179.99, id="bering-antimeridian"),
    pytest.param(-33.8688, 151.2093, id="sydney"),
]


@pytest.mark.parametrize(("lat", "lon"), REGIONS)
def test_the_index_answers_exactly_as_a_naive_loop(lat: float, lon: float) -> None:
    """150 overlapping geofences within 3 km, 1,000 fixes within 5 km with accuracies
    from exact to 5 km: the same containing and intersecting sets, one by one and batched."""
    rng = random.Random(f"{lat}/{lon}")
    geofences = random_geofences(rng, 150, lat, lon, 3_000.0)
    fixes = random_fixes(rng, 1_000, lat, lon, 5_000.0)
    index = GeofenceIndex.build(geofences)
    batch = index.locate_many(TENANT, [f[0] for f in fixes], [f[1] for f in fixes],
                              [f[2] for f in fixes])
    batch_locations = batch.locations()
    touched = inside = 0
    for row, (fix_lat, fix_lon, accuracy) in enumerate(fixes):
        expected = naive_answer(geofences, TENANT, fix_lat, fix_lon, accuracy)
        location = index.locate(TENANT, fix_lat, fix_lon, accuracy)
        got = (frozenset(g.id for g in location.containing),
               frozenset(g.id for g in location.intersecting))
        assert got == expected, (row, fix_lat, fix_lon, accuracy)
        assert batch_locations[row] == location
        assert batch.for_report(row) == location
        candidates = {g.id for g in index.candidates(TENANT, fix_lat, fix_lon, accuracy)}
        assert expected[1] <= candidates
        touched += bool(expected[1])
        inside += bool(expected[0])
    # The data exercise every case: fixes inside, only touching, and nowhere.
    assert 150 < touched < 900
    assert inside > 40


def test_results_come_in_id_order() -> None:
    centre = (40.4168, -3.7038)
    geofences = [geofence(name, Circle(*centre, radius))
                 for name, radius in [("c", 50.0), ("a", 200.0), ("b", 100.0)]]
    location = GeofenceIndex.build(geofences).locate(TENANT, *centre, 10.0)
    assert [g.id for g in location.containing] == ["a", "b", "c"]


def test_tenants_never_see_each_others_geofences() -> None:
    centre = (40.4168, -3.7038)
    acme = geofence("shop", Circle(*centre, 100.0), tenant="acme")
    other = geofence("shop", Circle(*centre, 100.0), tenant="other")  # the same id is fine
    index = GeofenceIndex.build([acme, other])
    assert index.containing("acme", *centre, 5.0) == (acme,)
    assert index.containing("other", *centre, 5.0) == (other,)
    assert index.locate("nobody", *centre, 5.0) is NOWHERE
    assert len(index.locate_many("nobody", [centre[0]], [centre[1]], [5.0])) == 0
    assert index.tenants == {"acme", "other"}
    assert len(index) == 2
    with pytest.raises(PlaceError) as error:
        index.locate("Not A Tenant", *centre, 5.0)
    assert error.value.field == "tenant"


def test_duplicate_ids_within_a_tenant_are_refused() -> None:
    shape = Circle(40.0, -3.0, 50.0)
    with pytest.raises(PlaceError, match="used twice") as error:
        GeofenceIndex.build([geofence("g1", shape), geofence("g1", shape, store="s2")])
    assert error.value.field == "id"
    with pytest.raises(PlaceError):
        GeofenceIndex.build(["not a geofence"])  # type: ignore[list-item]


@pytest.mark.parametrize(("lat", "lon", "accuracy", "field"), [
    (float("nan"), 0.0, 5.0, "lat"), (0.0, 181.0, 5.0, "lon"), (0.0, 0.0, -1.0, "accuracy_m"),
    (0.0, 0.0, 5_001.0, "accuracy_m"), (0.0, 0.0, float("inf"), "accuracy_m"),
])
def test_invalid_fixes_are_refused(lat: float, lon: float, accuracy: float, field: str) -> None:
    index = GeofenceIndex.build([geofence("g1", Circle(0.0, 0.0, 50.0))])
    with pytest.raises(PlaceError) as error:
        index.locate(TENANT, lat, lon, accuracy)
    assert error.value.field == field
    with pytest.raises(PlaceError) as batch_error:
        index.locate_many(TENANT, [0.0, 0.0, lat], [0.0, 0.0, lon], [1.0, 1.0, accuracy])
    assert batch_error.value.field == f"{field}[2]"


def test_malformed_batches_are_refused() -> None:
    index = GeofenceIndex.build([geofence("g1", Circle(0.0, 0.0, 50.0))])
    with pytest.raises(PlaceError, match="same length"):
        index.locate_many(TENANT, [0.0, 1.0], [0.0], [5.0])
    with pytest.raises(PlaceError, match="one-dimensional"):
        index.locate_many(TENANT, [[0.0]], [[0.0]], [[5.0]])  # type: ignore[list-item]
    with pytest.raises(PlaceError, match="numbers"):
        index.locate_many(TENANT, ["north"], [0.0], [5.0])  # type: ignore[list-item]
    empty = index.locate_many(TENANT, [], [], [])
    assert (len(empty), empty.rows, empty.locations()) == (0, 0, [])


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True),
       st.floats(allow_nan=True, allow_infinity=True),
       st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_fix_gives_an_answer_or_place_error(lat: float, lon: float,
                                                      accuracy: float) -> None:
    index = FUZZ_INDEX
    try:
        location = index.locate(TENANT, lat, lon, accuracy)
    except PlaceError:
        with pytest.raises(PlaceError):
            index.locate_many(TENANT, [lat], [lon], [accuracy])
        return
    assert index.locate_many(TENANT, [lat], [lon], [accuracy]).for_report(0) == location


FUZZ_INDEX = GeofenceIndex.build([
    geofence("pole", Circle(90.0, 0.0, 5_000.0)),
    geofence("south-pole", square(-89.99, 0.0, 2_000.0)),
    geofence("antimeridian", square(0.0, 180.0, 3_000.0)),
    geofence("origin", Circle(0.0, 0.0, 20_000.0)),
])


def test_fuzz_index_covers_edges_of_the_map() -> None:
    """The fuzzed index has geofences where boxes wrap: the poles and 180 degrees."""
    assert FUZZ_INDEX.containing(TENANT, 90.0, 123.0, 0.0)[0].id == "pole"
    assert FUZZ_INDEX.containing(TENANT, -89.995, -170.0, 10.0)[0].id == "south-pole"
    assert FUZZ_INDEX.containing(TENANT, 0.01, -179.99, 10.0)[0].id == "antimeridian"
    assert FUZZ_INDEX.containing(TENANT, 0.01, 179.99, 10.0)[0].id == "antimeridian"


def test_registry_changes_swap_in_a_new_index() -> None:
    centre = (40.4168, -3.7038)
    first = geofence("g1", Circle(*centre, 100.0))
    registry = GeofenceRegistry([first, geofence("x1", Circle(*centre, 100.0), tenant="other")])
    before = registry.current
    assert before.version == 0
    moved = geofence("g1", Circle(*at_offset(*centre, 1_000.0, 0.0), 100.0))
    after_put = registry.put(moved)
    assert registry.current is after_put
    assert after_put.version == 1
    assert after_put.containing(TENANT, *centre, 5.0) == ()
    assert before.containing(TENANT, *centre, 5.0) == (first,)  # the old index is unchanged
    assert after_put.containing("other", *centre, 5.0)[0].id == "x1"
    registry.put(geofence("g2", Circle(*centre, 100.0)))
    assert [g.id for g in registry.current.geofences(TENANT)] == ["g1", "g2"]
    registry.remove(TENANT, "g1")
    registry.remove(TENANT, "never-there")
    assert [g.id for g in registry.current.geofences(TENANT)] == ["g2"]
    registry.replace_tenant(TENANT, [])
    assert registry.current.tenants == {"other"}
    registry.replace_all([])
    assert len(registry.current) == 0
    assert registry.current.version == 6
    with pytest.raises(PlaceError):
        registry.replace_tenant(TENANT, [geofence("y", Circle(*centre, 5.0), tenant="other")])
    assert registry.current.version == 6  # a refused change publishes nothing


def test_readers_see_the_old_or_the_new_index_never_a_mix() -> None:
    """A writer swaps between two sets of geofences while readers locate fixes: every
    answer is one set's answer in full."""
    rng = random.Random(21)
    centre = (40.4168, -3.7038)
    set_a = random_geofences(rng, 300, *centre, 1_500.0)
    set_b = [geofence(f"b{g.id}", g.shape) for g in random_geofences(rng, 300, *centre, 1_500.0)]
    fixes = random_fixes(rng, 40, *centre, 1_500.0)
    answers = {
        name: [naive_answer(members, TENANT, *fix) for fix in fixes]
        for name, members in (("a", set_a), ("b", set_b))
    }
    registry = GeofenceRegistry(set_a)
    stop = threading.Event()
    problems: list[str] = []
    seen: set[str] = set()
    versions_read: set[int] = set()

    def read() -> None:
        while not stop.is_set():
            index = registry.current
            got = []
            for fix in fixes:
                location = index.locate(TENANT, *fix)
                got.append((frozenset(g.id for g in location.containing),
                            frozenset(g.id for g in location.intersecting)))
            matches = [name for name, expected in answers.items() if got == expected]
            if len(matches) != 1:
                problems.append(f"answers of neither set at version {index.version}")
            seen.update(matches)
            versions_read.add(index.version)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for swap in range(12):
        version = registry.replace_all(set_b if swap % 2 == 0 else set_a).version
        deadline = time.monotonic() + 30.0
        while version not in versions_read and time.monotonic() < deadline:
            time.sleep(0.001)  # let a reader answer from this version before the next swap
    stop.set()
    for reader in readers:
        reader.join()
    assert problems == []
    assert seen == {"a", "b"}
    assert registry.current.version == 12


def test_batch_rows_are_grouped_by_fix_then_geofence() -> None:
    rng = random.Random(4)
    centre = (40.4168, -3.7038)
    index = GeofenceIndex.build(random_geofences(rng, 100, *centre, 800.0))
    fixes = random_fixes(rng, 500, *centre, 1_000.0)
    pairs = index.locate_many(TENANT, np.array([f[0] for f in fixes]),
                              np.array([f[1] for f in fixes]), np.array([f[2] for f in fixes]))
    keys = list(zip(pairs.report.tolist(), pairs.geofence.tolist(), strict=True))
    assert keys == sorted(set(keys))
    assert pairs.rows == 500
