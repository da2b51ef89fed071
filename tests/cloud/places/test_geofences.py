"""Shapes in metres: how an accuracy disc relates to circles and polygons, and which
shapes are refused."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, time

import pytest
import shapely

from cloud.places.geodesy import LocalFrame
from cloud.places.geofences import (
    MAX_DWELL_AFTER_S,
    MAX_REACH_M,
    MAX_VERTICES,
    Circle,
    Geofence,
    Polygon,
    Relation,
)
from cloud.places.hours import OpeningInterval, OperatingHours, Weekday
from cloud.places.validation import PlaceError
from tests.cloud.places.factories import at_offset, geofence, square, star

MADRID = (40.4168, -3.7038)
INSIDE, TOUCHING, OUTSIDE = Relation.INSIDE, Relation.TOUCHING, Relation.OUTSIDE


@pytest.mark.parametrize(("east", "accuracy", "expected"), [
    (50.0, 30.0, INSIDE),     # the whole disc is inside
    (50.0, 49.9, INSIDE),
    (50.0, 50.01, TOUCHING),  # the disc reaches the border: not surely inside
    (50.0, 80.0, TOUCHING),   # straddles the border
    (0.0, 150.0, TOUCHING),   # a vague fix covering the whole circle
    (150.0, 40.0, OUTSIDE),
    (150.0, 50.0, TOUCHING),  # just reaches the border from outside
    (150.0, 60.0, TOUCHING),
    (99.0, 0.0, INSIDE),      # an exact fix
    (101.0, 0.0, OUTSIDE),
])
def test_circle_and_accuracy_disc(east: float, accuracy: float, expected: Relation) -> None:
    circle = Circle(*MADRID, 100.0)
    assert circle.relation(*at_offset(*MADRID, east, 0.0), accuracy) is expected


@pytest.mark.parametrize(("east", "north", "accuracy", "expected"), [
    (0.0, 0.0, 90.0, INSIDE),
    (0.0, 0.0, 100.5, TOUCHING),
    (80.0, 80.0, 19.0, INSIDE),     # near the corner, clear of both edges
    (80.0, 80.0, 21.0, TOUCHING),
    (120.0, 0.0, 10.0, OUTSIDE),    # 20 m east of the east edge
    (120.0, 0.0, 20.5, TOUCHING),
    (110.0, 110.0, 13.0, OUTSIDE),  # diagonal from the corner: 14.1 m away
    (110.0, 110.0, 15.0, TOUCHING),
    (0.0, 99.0, 0.0, INSIDE),
    (0.0, 101.0, 0.0, OUTSIDE),
])
def test_square_and_accuracy_disc(east: float, north: float, accuracy: float,
                                  expected: Relation) -> None:
    shape = square(*MADRID, 100.0)
    assert shape.relation(*at_offset(*MADRID, east, north), accuracy) is expected


def test_a_fix_in_a_hole_is_outside_until_its_disc_reaches_the_ring() -> None:
    outer, hole = square(*MADRID, 100.0), square(*MADRID, 30.0)
    courtyard = Polygon(outer.exterior, (hole.exterior,))
    centre = at_offset(*MADRID, 5.0, 0.0)
    assert courtyard.relation(*centre, 20.0) is OUTSIDE
    assert courtyard.relation(*centre, 26.0) is TOUCHING
    assert courtyard.relation(*at_offset(*MADRID, 60.0, 0.0), 20.0) is INSIDE
    assert courtyard.relation(*at_offset(*MADRID, 60.0, 0.0), 31.0) is TOUCHING


def test_a_circle_is_round_in_metres_at_high_latitude() -> None:
    """At 78 N a degree of longitude is 23 km and a degree of latitude 111 km; geometry
    in degrees would make this circle an ellipse 5 times wider than tall."""
    longyearbyen = (78.2232, 15.6267)
    circle = Circle(*longyearbyen, 100.0)
    for angle in range(0, 360, 15):
        east = 99.0 * math.cos(math.radians(angle))
        north = 99.0 * math.sin(math.radians(angle))
        assert circle.relation(*at_offset(*longyearbyen, east, north), 0.5) is INSIDE
        assert circle.relation(*at_offset(*longyearbyen, east * 1.02, north * 1.02),
                               0.5) is OUTSIDE


def test_a_polygon_across_the_antimeridian() -> None:
    """Taveuni (Fiji) lies on 180 degrees; a store there straddles it."""
    shape = square(-16.8, 180.0, 100.0)
    assert {round(lon) for lon, _lat in shape.exterior} == {-180, 180}
    assert shape.reach_m == pytest.approx(100.0 * math.sqrt(2), rel=1e-6)
    assert shape.relation(-16.8, 179.9995, 10.0) is INSIDE
    assert shape.relation(-16.8, -179.9995, 10.0) is INSIDE
    assert shape.relation(-16.8, -179.99, 10.0) is OUTSIDE


def test_a_polygon_around_the_north_pole() -> None:
    station = square(90.0, 0.0, 200.0)
    assert station.relation(89.9995, 123.0, 5.0) is INSIDE
    assert station.relation(89.99, 0.0, 5.0) is OUTSIDE


def test_the_far_side_of_the_earth_is_outside() -> None:
    """It projects near every frame's origin; the chord check keeps it out."""
    assert Circle(40.0, -3.0, 20_000.0).relation(-40.0, 177.0, 5_000.0) is OUTSIDE
    assert square(40.0, -3.0, 10_000.0).relation(-40.0, 177.0, 5_000.0) is OUTSIDE


def test_polygon_relations_agree_with_geos() -> None:
    """The edge-distance arithmetic against GEOS's own distance and containment, on random
    polygons (concave, some with holes) and fixes; exact ties are skipped."""
    rng = random.Random(11)
    frame = LocalFrame.at(*MADRID)
    checked = 0
    for number in range(40):
        hole = number % 3 == 0
        shape = star(rng, *MADRID, rng.uniform(30, 300), rng.randint(6 if hole else 3, 20),
                     hole=hole)
        plane = shapely.Polygon(
            [frame.to_plane(lat, lon) for lon, lat in shape.exterior],
            [[frame.to_plane(lat, lon) for lon, lat in hole] for hole in shape.holes])
        for _ in range(100):
            east, north = rng.uniform(-350, 350), rng.uniform(-350, 350)
            accuracy = rng.choice([0.0, rng.uniform(0, 30), rng.uniform(0, 300)])
            lat, lon = frame.to_lat_lon(east, north)
            point = shapely.Point(frame.to_plane(lat, lon))
            border = plane.boundary.distance(point)
            if abs(border - accuracy) < 1e-6:
                continue
            if border <= accuracy:
                expected = TOUCHING
            else:
                expected = INSIDE if plane.contains(point) else OUTSIDE
            assert shape.relation(lat, lon, accuracy) is expected
            checked += 1
    assert checked > 3_900


def test_containment_matches_a_buffered_point() -> None:
    """The issue's definition: enter when the point buffered by its accuracy lies inside.
    shapely's buffer is a 256-gon inscribed in the disc, so ties within 1 cm are skipped."""
    rng = random.Random(12)
    frame = LocalFrame.at(*MADRID)
    shape = star(rng, *MADRID, 200.0, 12, hole=True)
    plane = shapely.Polygon(
        [frame.to_plane(lat, lon) for lon, lat in shape.exterior],
        [[frame.to_plane(lat, lon) for lon, lat in hole] for hole in shape.holes])
    for _ in range(400):
        east, north, accuracy = rng.uniform(-250, 250), rng.uniform(-250, 250), rng.uniform(
            1, 80)
        disc = shapely.Point(east, north).buffer(accuracy, quad_segs=64)
        if abs(plane.boundary.distance(shapely.Point(east, north)) - accuracy) < 0.01:
            continue
        relation = shape.relation(*frame.to_lat_lon(east, north), accuracy)
        assert (relation is INSIDE) == plane.contains(disc)
        assert (relation is not OUTSIDE) == plane.intersects(disc)


@pytest.mark.parametrize(("lat", "lon", "radius", "field"), [
    (40.0, -3.0, 0.0, "shape.circle.radius_m"),
    (40.0, -3.0, -10.0, "shape.circle.radius_m"),
    (40.0, -3.0, MAX_REACH_M + 1, "shape.circle.radius_m"),
    (40.0, -3.0, math.nan, "shape.circle.radius_m"),
    (40.0, -3.0, math.inf, "shape.circle.radius_m"),
    (95.0, -3.0, 10.0, "shape.circle.lat"),
    (40.0, -300.0, 10.0, "shape.circle.lon"),
    (math.nan, -3.0, 10.0, "shape.circle.lat"),
])
def test_invalid_circles_are_refused(lat: float, lon: float, radius: float, field: str) -> None:
    with pytest.raises(PlaceError) as error:
        Circle(lat, lon, radius)
    assert error.value.field == field


def ring_of(points: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """A ring from (east, north) metres around Madrid."""
    ring = []
    for east, north in points:
        lat, lon = at_offset(*MADRID, east, north)
        ring.append((lon, lat))
    return tuple(ring)


def test_a_self_intersecting_polygon_is_refused_with_where() -> None:
    bowtie = ring_of([(0, 0), (100, 100), (100, 0), (0, 100), (0, 0)])
    with pytest.raises(PlaceError, match=r"Self-intersection near lon -3\.70\d+, lat 40\.41"
                       ) as error:
        Polygon(bowtie)
    assert error.value.field == "shape"


@pytest.mark.parametrize(("exterior", "holes", "field", "reason"), [
    (ring_of([(0, 0), (10, 0), (10, 10), (0, 10)]), (), "shape.coordinates[0]", "closed"),
    (ring_of([(0, 0), (10, 0), (0, 0)]), (), "shape.coordinates[0]", "at least 4"),
    (ring_of([(0, 0)] * 5), (), "shape", "Too few points"),
    (ring_of([(0, 0), (10, 0), (20, 0), (0, 0)]), (), "shape", "square metre|not a valid"),
    (ring_of([(0, 0), (30, 0), (30, 0.01), (0, 0)]), (), "shape", "square metre"),
    (ring_of([(0, 0), (50_000, 0), (50_000, 10), (0, 0)]), (), "shape.coordinates[0][0]",
     "at most 20000 m"),
    (ring_of([(0, 0), (100, 0), (100, 100), (0, 0)]),
     (ring_of([(200, 200), (210, 200), (210, 210), (200, 200)]),), "shape", "not a valid"),
    (((-3.7, 40.4), (-3.7, 95.0), (-3.69, 40.4), (-3.7, 40.4)), (),
     "shape.coordinates[0][1].lat", "[-90, 90]"),
    (((-3.7, 40.4, 600.0), (-3.7, 40.5), (-3.69, 40.4), (-3.7, 40.4)), (),
     "shape.coordinates[0][0]", "pair"),
    ("not a ring", (), "shape.coordinates[0]", "list"),
    (ring_of([(0, 0), (10, 0), (10, 10), (0, 0)]), "x", "shape.coordinates", "holes"),
])
def test_invalid_polygons_are_refused(exterior: object, holes: object, field: str,
                                      reason: str) -> None:
    with pytest.raises(PlaceError, match=reason) as error:
        Polygon(exterior, holes)  # type: ignore[arg-type]
    assert error.value.field == field


def test_a_polygon_with_too_many_corners_is_refused() -> None:
    corners = [(100 * math.cos(a), 100 * math.sin(a))
               for a in (2 * math.pi * k / MAX_VERTICES for k in range(MAX_VERTICES))]
    with pytest.raises(PlaceError, match=f"at most {MAX_VERTICES}"):
        Polygon(ring_of([*corners, corners[0]]))


def test_shapes_compare_by_definition_and_hash() -> None:
    first, second = square(*MADRID, 50.0), square(*MADRID, 50.0)
    assert first == second
    assert hash(first) == hash(second)
    assert first != square(*MADRID, 51.0)
    assert len({geofence("a", first), geofence("a", second)}) == 1


@pytest.mark.parametrize(("changes", "field"), [
    ({"id": ""}, "id"),
    ({"id": "has space"}, "id"),
    ({"tenant": "ACME"}, "tenant"),
    ({"store": "a/b"}, "store"),
    ({"dwell_after_s": 0.0}, "dwell_after_s"),
    ({"dwell_after_s": -5.0}, "dwell_after_s"),
    ({"dwell_after_s": MAX_DWELL_AFTER_S * 2}, "dwell_after_s"),
    ({"dwell_after_s": math.nan}, "dwell_after_s"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"shape": "a circle"}, "shape"),
    ({"hours": "9 to 5"}, "hours"),
])
def test_invalid_geofences_are_refused(changes: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {"id": "g1", "tenant": "acme", "store": "s1",
                                 "shape": Circle(*MADRID, 50.0), "dwell_after_s": 60.0,
                                 "timezone": "Europe/Madrid", "hours": None}
    fields.update(changes)
    with pytest.raises(PlaceError) as error:
        Geofence(**fields)  # type: ignore[arg-type]
    assert error.value.field == field


def test_a_geofence_is_active_in_its_hours_only() -> None:
    weekdays = OperatingHours(tuple(OpeningInterval(day, time(9), time(21))
                                    for day in (Weekday.MON, Weekday.TUE)))
    shop = geofence("g1", Circle(*MADRID, 50.0), hours=weekdays)
    always = geofence("g2", Circle(*MADRID, 50.0))
    monday_noon = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)  # 12:00 in Madrid
    sunday_noon = datetime(2024, 6, 2, 10, 0, tzinfo=UTC)
    assert shop.is_active(monday_noon)
    assert not shop.is_active(sunday_noon)
    assert always.is_active(sunday_noon)
