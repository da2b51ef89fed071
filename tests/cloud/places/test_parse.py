"""Geofence definitions and location reports from JSON: what is accepted, what is refused
and how the refusal names the field."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime, time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.places.geofences import Circle, Geofence, Polygon
from cloud.places.hours import OpeningInterval, Weekday
from cloud.places.parse import (
    GeofenceSpec,
    geofence_to_dict,
    parse_geofence,
    parse_location_report,
)
from cloud.places.tracker import LocationReport
from cloud.places.validation import PlaceError
from tests.cloud.places.factories import at_offset

MADRID = (40.4168, -3.7038)


def ring(*corners: tuple[float, float]) -> list[list[float]]:
    """A closed GeoJSON ring from (east, north) metres around Madrid."""
    positions = []
    for east, north in (*corners, corners[0]):
        lat, lon = at_offset(*MADRID, east, north)
        positions.append([lon, lat])
    return positions


def definition(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "madrid-centro", "tenant": "acme", "store": "madrid-01",
        "shape": {"circle": {"lat": MADRID[0], "lon": MADRID[1], "radius_m": 120}},
        "dwell_after_s": 300, "timezone": "Europe/Madrid",
        "hours": {"mon": [["09:30", "21:00"]], "fri": [["09:30", "21:00"], ["22:00", "02:00"]]},
    }
    data.update(changes)
    return data


def test_a_circle_with_hours() -> None:
    parsed = parse_geofence(definition())
    assert parsed.shape == Circle(*MADRID, 120.0)
    assert (parsed.id, parsed.tenant, parsed.store, parsed.dwell_after_s) == (
        "madrid-centro", "acme", "madrid-01", 300.0)
    assert parsed.hours is not None
    assert OpeningInterval(Weekday.FRI, time(22), time(2)) in parsed.hours.intervals
    assert len(parsed.hours.intervals) == 3


def test_a_geojson_polygon_with_a_hole_altitudes_and_a_bbox() -> None:
    shell = ring((-100, -100), (100, -100), (100, 100), (-100, 100))
    hole = ring((-20, -20), (20, -20), (20, 20), (-20, 20))
    shell[0] = [*shell[0], 655.0]  # an altitude is allowed, and ignored
    shell[-1] = [*shell[-1], 655.0]
    shape = {"type": "Polygon", "coordinates": [shell, hole], "bbox": [-3.71, 40.41, -3.70, 40.42]}
    parsed = parse_geofence(definition(shape=shape, hours=None))
    assert isinstance(parsed.shape, Polygon)
    assert len(parsed.shape.holes) == 1
    assert parsed.shape.exterior[0] == tuple(shell[0][:2])
    assert parsed.hours is None


def test_definitions_round_trip_through_json() -> None:
    for shape in (
        {"circle": {"lat": -16.8, "lon": 180.0, "radius_m": 75.5}},
        {"type": "Polygon", "coordinates": [ring((0, 0), (100, 0), (50, 80)),
                                            ring((40, 20), (60, 20), (50, 35))]},
    ):
        original = parse_geofence(definition(shape=shape))
        again = parse_geofence(json.loads(json.dumps(geofence_to_dict(original))))
        assert again == original


def test_the_spec_is_a_usable_api_body() -> None:
    spec = GeofenceSpec.model_validate(definition())
    assert spec.geofence == parse_geofence(definition())
    schema = GeofenceSpec.model_json_schema()
    assert {"id", "shape", "timezone"} <= set(schema["properties"])


@pytest.mark.parametrize(("data", "field", "reason"), [
    ({k: v for k, v in definition().items() if k != "id"}, "id", "required"),
    (definition(colour="red"), "colour", "not permitted"),
    (definition(shape={"square": 5}), "shape", "GeoJSON Polygon"),
    (definition(shape={"circle": {"lat": 40.0, "lon": -3.0, "radius_m": "120"}}),
     "shape.circle.radius_m", "number"),
    (definition(shape={"circle": {"lat": 40.0, "lon": -3.0, "radius_m": 0}}),
     "shape.circle.radius_m", "> 0"),
    (definition(shape={"circle": {"lat": 140.0, "lon": -3.0, "radius_m": 10}}),
     "shape.circle.lat", "[-90, 90]"),
    (definition(shape={"circle": {"lat": math.nan, "lon": -3.0, "radius_m": 10}}),
     "shape.circle.lat", "finite"),
    (definition(shape={"type": "MultiPolygon", "coordinates": []}), "shape.type", "Polygon"),
    (definition(shape={"type": "Polygon", "coordinates": [[[1.0], [2.0, 3.0]]]}),
     "shape.coordinates.0.0", "at least 2"),
    (definition(shape={"type": "Polygon",
                       "coordinates": [ring((0, 0), (100, 100), (100, 0), (0, 100))]}),
     "shape", "Self-intersection"),
    (definition(shape={"type": "Polygon", "coordinates": [ring((0, 0), (100, 0))[:3]]}),
     "shape.coordinates[0]", "at least 4"),
    (definition(hours={"funday": [["09:00", "10:00"]]}), "hours.funday.[key]", "mon"),
    (definition(hours={"mon": [["25:00", "10:00"]]}), "hours.mon.0.0", "pattern"),
    (definition(hours={"mon": [["9:00", "10:00"]]}), "hours.mon.0.0", "pattern"),
    (definition(hours={}), "hours", "at least one"),
    (definition(timezone="Europe/Atlantis"), "timezone", "IANA"),
    (definition(dwell_after_s=True), "dwell_after_s", "number"),
    (definition(dwell_after_s=-1), "dwell_after_s", "> 0"),
    (definition(tenant="ACME Corp"), "tenant", "a-z"),
    ([1, 2, 3], "value", "dictionary"),
    (None, "value", "dictionary"),
])
def test_bad_definitions_name_the_field(data: object, field: str, reason: str) -> None:
    with pytest.raises(PlaceError, match=reason) as error:
        parse_geofence(data)
    assert error.value.field == field


def test_several_problems_are_counted_in_the_message() -> None:
    with pytest.raises(PlaceError, match=r"and 4 more problems"):
        parse_geofence({"id": "x"})


def test_location_reports() -> None:
    parsed = parse_location_report({"tenant": "acme", "subject": "customer:42", "lat": 40.4,
                                    "lon": -3.7, "accuracy_m": 12, "at": "2024-06-03T10:00:00Z"})
    assert parsed == LocationReport("acme", "customer:42", 40.4, -3.7, 12.0,
                                    datetime(2024, 6, 3, 10, tzinfo=UTC))
    cases: list[tuple[dict[str, object], str]] = [
        ({"at": "2024-06-03T10:00:00"}, "at"), ({"lat": -91.0}, "lat"),
        ({"accuracy_m": -3}, "accuracy_m"), ({"subject": ""}, "subject")]
    for changes, field in cases:
        data = {"tenant": "acme", "subject": "c1", "lat": 40.4, "lon": -3.7, "accuracy_m": 12,
                "at": "2024-06-03T10:00:00Z", **changes}
        with pytest.raises(PlaceError) as error:
            parse_location_report(data)
        assert error.value.field == field


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_is_parsed_or_refused_with_place_error(data: object) -> None:
    for parse in (parse_geofence, parse_location_report):
        with contextlib.suppress(PlaceError):
            assert parse(data) is not None


#: Anything a client could put where a number goes.
NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1_000, 1_000),
                   st.just("1"), st.none(), st.booleans())


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any], odds: int = 8
           ) -> st.SearchStrategy[Any]:
    """Valid `odds` times to one, so that examples reach the checks behind the first."""
    return st.integers(0, odds).flatmap(lambda draw: invalid if draw == 0 else valid)


LAT = mostly(st.floats(-0.005, 0.005).map(lambda d: MADRID[0] + d), NUMBER, odds=30)
LON = mostly(st.floats(-0.005, 0.005).map(lambda d: MADRID[1] + d), NUMBER, odds=30)
POSITION = mostly(st.tuples(LON, LAT).map(list), st.lists(NUMBER, max_size=4), odds=30)
RING = st.lists(POSITION, min_size=3, max_size=10).map(lambda ps: [*ps, ps[0]])


def by_angle(positions: list[list[float]]) -> list[list[float]]:
    """The corners sorted around their mean, closed: a simple polygon (if they are valid)."""
    lon = sum(p[0] for p in positions) / len(positions)
    lat = sum(p[1] for p in positions) / len(positions)
    ordered = sorted(positions, key=lambda p: math.atan2(p[1] - lat, p[0] - lon))
    return [*ordered, ordered[0]]


SIMPLE_RING = st.lists(st.tuples(st.floats(-0.005, 0.005), st.floats(-0.005, 0.005)),
                       min_size=3, max_size=12).map(
    lambda offsets: by_angle([[MADRID[1] + east, MADRID[0] + north]
                              for east, north in offsets]))
SHAPE = st.one_of(
    st.fixed_dictionaries({"circle": st.fixed_dictionaries(
        {"lat": LAT, "lon": LON, "radius_m": mostly(st.floats(1, 500), NUMBER)})}),
    st.fixed_dictionaries({"type": mostly(st.just("Polygon"), st.text(max_size=8), odds=10),
                           "coordinates": mostly(SIMPLE_RING.map(lambda ring: [ring]),
                                                 st.lists(RING, min_size=1, max_size=3),
                                                 odds=2)}),
)
WALL = mostly(st.sampled_from(["00:00", "02:00", "09:30", "21:00", "23:59"]),
              st.text(max_size=6))
DEFINITION = st.fixed_dictionaries({
    "id": mostly(st.just("g1"), st.text(max_size=5)),
    "tenant": mostly(st.just("acme"), st.text(max_size=5)),
    "store": st.just("s1"),
    "shape": SHAPE,
    "dwell_after_s": mostly(st.floats(1, 3_600), NUMBER),
    "timezone": mostly(st.sampled_from(["Europe/Madrid", "UTC", "Pacific/Fiji"]),
                       st.text(max_size=12)),
    "hours": st.one_of(st.none(), st.dictionaries(
        mostly(st.sampled_from(["mon", "tue", "sun"]), st.text(max_size=4)),
        st.lists(st.tuples(WALL, WALL), max_size=3), max_size=3)),
})


@settings(max_examples=400, deadline=None)
@given(DEFINITION)
def test_nearly_valid_definitions_are_parsed_or_refused_with_place_error(
    data: dict[str, Any],
) -> None:
    outcome: Geofence | PlaceError
    try:
        outcome = parse_geofence(data)
    except PlaceError as error:
        outcome = error
    if isinstance(outcome, PlaceError):
        assert outcome.field
        assert str(outcome).startswith(f"{outcome.field}: ")
        return
    assert parse_geofence(geofence_to_dict(outcome)) == outcome
