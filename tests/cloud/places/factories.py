"""Builders for geofences and fixes placed in metres around a point."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from cloud.places.geodesy import LocalFrame
from cloud.places.geofences import Circle, Geofence, Polygon, Relation, Shape
from cloud.places.hours import OperatingHours

TENANT = "acme"


def at_offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The (lat, lon) `east_m` east and `north_m` north of (lat, lon), exactly in its frame."""
    return LocalFrame.at(lat, lon).to_lat_lon(east_m, north_m)


def square(lat: float, lon: float, half_side_m: float) -> Polygon:
    """An axis-aligned square in the local frame of (lat, lon)."""
    frame = LocalFrame.at(lat, lon)
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]
    ring = []
    for x, y in corners:
        corner_lat, corner_lon = frame.to_lat_lon(x * half_side_m, y * half_side_m)
        ring.append((corner_lon, corner_lat))
    return Polygon(tuple(ring))


def star(rng: random.Random, lat: float, lon: float, radius_m: float, corners: int,
         hole: bool = False) -> Polygon:
    """A random simple polygon around (lat, lon): one corner per angular sector. With
    six corners or more the shell stays over 0.35 * radius from the centre, clear of the
    hole (at most 0.3 * radius)."""
    assert corners >= 6 or not hole
    frame = LocalFrame.at(lat, lon)

    def ring(reach: float, count: int) -> tuple[tuple[float, float], ...]:
        step = 2.0 * math.pi / count
        points = []
        for sector in range(count):
            angle = step * (sector + rng.uniform(0.0, 0.8))
            distance = reach * rng.uniform(0.6, 1.0)
            point_lat, point_lon = frame.to_lat_lon(distance * math.cos(angle),
                                                    distance * math.sin(angle))
            points.append((point_lon, point_lat))
        return (*points, points[0])

    holes = (ring(radius_m * 0.3, 5),) if hole else ()
    return Polygon(ring(radius_m, corners), holes)


def geofence(geofence_id: str, shape: Shape, *, store: str = "s1", tenant: str = TENANT,
             dwell_after_s: float = 300.0, timezone: str = "Europe/Madrid",
             hours: OperatingHours | None = None) -> Geofence:
    return Geofence(geofence_id, tenant, store, shape, dwell_after_s, timezone, hours)


def random_geofences(rng: random.Random, count: int, lat: float, lon: float,
                     spread_m: float) -> list[Geofence]:
    """Circles and polygons (some with holes) scattered within `spread_m` of a point."""
    geofences = []
    for number in range(count):
        centre_lat, centre_lon = at_offset(lat, lon, rng.uniform(-spread_m, spread_m),
                                           rng.uniform(-spread_m, spread_m))
        shape: Shape
        if number % 2:
            shape = Circle(centre_lat, centre_lon, rng.uniform(20.0, 400.0))
        else:
            hole = number % 6 == 0
            shape = star(rng, centre_lat, centre_lon, rng.uniform(30.0, 400.0),
                         rng.randint(6 if hole else 3, 14), hole=hole)
        geofences.append(geofence(f"g{number:04d}", shape, store=f"s{number}"))
    return geofences


def random_fixes(rng: random.Random, count: int, lat: float, lon: float, spread_m: float
                 ) -> list[tuple[float, float, float]]:
    """Fixes around the same area, accuracies from exact to a few km."""
    fixes = []
    for _ in range(count):
        fix_lat, fix_lon = at_offset(lat, lon, rng.uniform(-spread_m, spread_m),
                                     rng.uniform(-spread_m, spread_m))
        accuracy = rng.choice([0.0, rng.uniform(1.0, 60.0), rng.uniform(60.0, 600.0),
                               rng.uniform(600.0, 5_000.0)])
        fixes.append((fix_lat, fix_lon, accuracy))
    return fixes


def naive_answer(geofences: Sequence[Geofence], tenant: str, lat: float, lon: float,
                 accuracy_m: float) -> tuple[frozenset[str], frozenset[str]]:
    """Containing and intersecting ids by testing every geofence: what the index must give."""
    containing, intersecting = set(), set()
    for candidate in geofences:
        if candidate.tenant != tenant:
            continue
        relation = candidate.relation(lat, lon, accuracy_m)
        if relation is not Relation.OUTSIDE:
            intersecting.add(candidate.id)
            if relation is Relation.INSIDE:
                containing.add(candidate.id)
    return frozenset(containing), frozenset(intersecting)
