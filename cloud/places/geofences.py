"""Geofences: circles and polygons around stores, and how a location fix relates to one.

Shapes are given in WGS84 degrees (as admins and GeoJSON give them) and validated and
compiled on construction: each gets a local metric frame (`geodesy.LocalFrame`) and a
polygon its metric shapely geometry, prepared once, so a shape that exists is valid and
ready to test. A location fix is a disc, the reported point and its accuracy radius;
`relation` says whether that disc lies inside a geofence, touches it, or misses it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from zoneinfo import ZoneInfo

import numpy as np
import shapely

from cloud.places.geodesy import LocalFrame, ecef, geodetic
from cloud.places.hours import OperatingHours, time_zone
from cloud.places.validation import (
    PlaceError,
    check_finite,
    check_id,
    check_lat_lon,
    check_segment,
)

#: A geofence is a store, a mall or the streets around it. Bounding its size keeps the
#: local frame's error under 0.2 m at the edge (see geodesy) and the index's boxes small.
MAX_REACH_M = 20_000.0

#: No phone fix fits a smaller shape: an outline under a square metre is a slip (collinear
#: corners, a repeated point), not a place.
MIN_AREA_M2 = 1.0

#: A store outline needs tens of points; the bound keeps every containment test cheap.
MAX_VERTICES = 1_000

#: A dwell is minutes in a store; a threshold over a day would never fire for a shopper
#: and most likely is a unit mistake (milliseconds given as seconds).
MAX_DWELL_AFTER_S = 86_400.0

#: A point that is not outside a geofence lies within reach + accuracy of its origin in
#: the plane; its chord (3-D) distance exceeds the plane distance by under 0.1 m that
#: close, so "chord > reach + accuracy + this" is a safe early "outside" (and it is what
#: rejects points on the far side of the earth, which also project near the origin).
CHORD_MARGIN_M = 1.0

_LOCATION_IN_REASON = re.compile(r"^(?P<what>[^\[]*)\[(?P<x>\S+) (?P<y>\S+)\]")


class Relation(IntEnum):
    """How a location disc relates to a geofence (ordered: INSIDE implies touching)."""

    OUTSIDE = 0
    TOUCHING = 1
    INSIDE = 2


@dataclass(frozen=True, slots=True)
class Circle:
    """All points within `radius_m` metres of (`lat`, `lon`)."""

    lat: float
    lon: float
    radius_m: float
    frame: LocalFrame = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lat, lon = check_lat_lon(self.lat, self.lon, "shape.circle")
        radius = check_finite("shape.circle.radius_m", self.radius_m)
        if not 0.0 < radius <= MAX_REACH_M:
            raise PlaceError(
                "shape.circle.radius_m", f"must be > 0 and <= {MAX_REACH_M:g} m, got {radius!r}"
            )
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        object.__setattr__(self, "radius_m", radius)
        object.__setattr__(self, "frame", LocalFrame.at(lat, lon))

    @property
    def reach_m(self) -> float:
        """The largest plane distance of any point of the shape from its frame's origin."""
        return self.radius_m

    def relation(self, lat: float, lon: float, accuracy_m: float) -> Relation:
        east, north, chord = self.frame.offset(lat, lon)
        if chord > self.radius_m + accuracy_m + CHORD_MARGIN_M:
            return Relation.OUTSIDE
        distance = math.sqrt(east * east + north * north)
        if distance + accuracy_m < self.radius_m:
            return Relation.INSIDE
        if distance <= self.radius_m + accuracy_m:
            return Relation.TOUCHING
        return Relation.OUTSIDE


Ring = tuple[tuple[float, float], ...]
#: A polygon edge in its frame: start (x, y), direction (dx, dy) and squared length.
Segment = tuple[float, float, float, float, float]


def near_segments(segments: tuple[Segment, ...], east: float, north: float,
                  accuracy_m: float) -> bool:
    """Whether the point (`east`, `north`) is within `accuracy_m` of any edge.

    Plain arithmetic (the index repeats it, in the same order, in numpy for batches):
    cheaper per call than building a shapely point for a distance query.
    """
    limit = accuracy_m * accuracy_m
    for x, y, dx, dy, length2 in segments:
        wx = east - x
        wy = north - y
        along = min(max((wx * dx + wy * dy) / length2, 0.0), 1.0)
        cx = wx - along * dx
        cy = wy - along * dy
        if cx * cx + cy * cy <= limit:
            return True
    return False


def _segments(rings: list[list[tuple[float, float]]]) -> tuple[Segment, ...]:
    """Every edge of every ring, skipping zero-length ones (repeated corners)."""
    edges = []
    for ring in rings:
        for (x, y), (x2, y2) in itertools.pairwise(ring):
            dx, dy = x2 - x, y2 - y
            if dx != 0.0 or dy != 0.0:
                edges.append((x, y, dx, dy, dx * dx + dy * dy))
    return tuple(edges)


@dataclass(frozen=True, slots=True)
class Polygon:
    """A polygon with optional holes; rings are closed sequences of (lon, lat), as in GeoJSON.

    Edges are straight lines in the polygon's local frame (for store-sized shapes they are
    the same as geodesics to well under a millimetre). Self-intersections, holes outside
    the shell and outlines under a square metre are refused with the reason (and, for
    GEOS's findings, the place as lon/lat).
    """

    exterior: Ring
    holes: tuple[Ring, ...] = ()
    frame: LocalFrame = field(init=False, repr=False, compare=False)
    metric: shapely.Polygon = field(init=False, repr=False, compare=False)
    segments: tuple[Segment, ...] = field(init=False, repr=False, compare=False)
    reach_m: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.holes, Sequence) or isinstance(self.holes, str):
            raise PlaceError("shape.coordinates", "holes must be a list of rings")
        exterior = _ring("shape.coordinates[0]", self.exterior)
        holes = tuple(
            _ring(f"shape.coordinates[{position + 1}]", hole)
            for position, hole in enumerate(self.holes)
        )
        vertex_count = len(exterior) + sum(len(hole) for hole in holes)
        if vertex_count > MAX_VERTICES:
            raise PlaceError(
                "shape.coordinates", f"has {vertex_count} positions; at most {MAX_VERTICES}"
            )
        frame = _frame_for(exterior)
        shell = _to_plane(frame, "shape.coordinates[0]", exterior)
        metric_holes = [
            _to_plane(frame, f"shape.coordinates[{position + 1}]", hole)
            for position, hole in enumerate(holes)
        ]
        metric = shapely.Polygon(shell, metric_holes)
        if not metric.is_valid:
            raise PlaceError("shape", _invalid_reason(frame, metric))
        if metric.is_empty or not metric.area >= MIN_AREA_M2:
            raise PlaceError("shape", f"encloses {metric.area:.3g} m^2: less than a square"
                             " metre (collinear or repeated corners?)")
        shapely.prepare(metric)
        # GEOS builds a prepared polygon's point locator on first use; do it here, once,
        # so that readers sharing the shape (several threads, several indexes) only read.
        shapely.contains_xy(metric, 0.0, 0.0)
        object.__setattr__(self, "exterior", exterior)
        object.__setattr__(self, "holes", holes)
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "metric", metric)
        object.__setattr__(self, "segments", _segments([shell, *metric_holes]))
        object.__setattr__(self, "reach_m", max(math.hypot(x, y) for x, y in shell))

    def relation(self, lat: float, lon: float, accuracy_m: float) -> Relation:
        east, north, chord = self.frame.offset(lat, lon)
        if chord > self.reach_m + accuracy_m + CHORD_MARGIN_M:
            return Relation.OUTSIDE
        if near_segments(self.segments, east, north, accuracy_m):
            return Relation.TOUCHING
        if shapely.contains_xy(self.metric, east, north):
            return Relation.INSIDE
        return Relation.OUTSIDE


Shape = Circle | Polygon


def _ring(field_name: str, ring: object) -> Ring:
    """A closed ring of at least three distinct corners, as a tuple of (lon, lat) floats."""
    if not isinstance(ring, Sequence) or isinstance(ring, str):
        raise PlaceError(field_name, "must be a list of [lon, lat] positions")
    if len(ring) < 4:
        raise PlaceError(
            field_name, f"needs at least 4 positions (a closed triangle), got {len(ring)}"
        )
    positions: list[tuple[float, float]] = []
    for index, position in enumerate(ring):
        if (not isinstance(position, Sequence) or isinstance(position, str)
                or len(position) != 2):
            raise PlaceError(f"{field_name}[{index}]", "must be a [lon, lat] pair")
        lat, lon = check_lat_lon(position[1], position[0], f"{field_name}[{index}]")
        positions.append((lon, lat))
    if positions[0] != positions[-1]:
        raise PlaceError(
            field_name, "must be closed: the last position repeats the first (GeoJSON)"
        )
    return tuple(positions)


def _frame_for(ring: Ring) -> LocalFrame:
    """A frame at the ring's centre: the mean of its corners as earth-centred vectors,
    which has no trouble with the antimeridian or a pole (averaging degrees would)."""
    corners = np.array([ecef(lat, lon) for lon, lat in ring[:-1]])
    x, y, z = corners.mean(axis=0)
    lat, lon = geodetic(float(x), float(y), float(z))
    return LocalFrame.at(lat, lon)


def _to_plane(frame: LocalFrame, field_name: str, ring: Ring) -> list[tuple[float, float]]:
    plane: list[tuple[float, float]] = []
    for index, (lon, lat) in enumerate(ring):
        east, north, chord = frame.offset(lat, lon)
        if chord > MAX_REACH_M:
            raise PlaceError(
                f"{field_name}[{index}]",
                f"lies {chord:.0f} m from the shape's centre; a geofence reaches at most"
                f" {MAX_REACH_M:g} m",
            )
        plane.append((east, north))
    return plane


def _invalid_reason(frame: LocalFrame, metric: shapely.Polygon) -> str:
    """GEOS's reason, with the place it names turned back into lon/lat."""
    reason = str(shapely.is_valid_reason(metric))
    match = _LOCATION_IN_REASON.match(reason)
    if match is None:
        return f"is not a valid polygon: {reason}"
    lat, lon = frame.to_lat_lon(float(match["x"]), float(match["y"]))
    return f"is not a valid polygon: {match['what'].strip()} near lon {lon:.6f}, lat {lat:.6f}"


@dataclass(frozen=True, slots=True)
class Geofence:
    """A store's geofence: where (shape), when (operating hours in the store's zone) and
    how long inside counts as a dwell. `id` is unique within its tenant."""

    id: str
    tenant: str
    store: str
    shape: Shape
    dwell_after_s: float
    timezone: str
    hours: OperatingHours | None = None
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_id("id", self.id)
        check_segment("tenant", self.tenant)
        check_segment("store", self.store)
        if not isinstance(self.shape, Circle | Polygon):
            raise PlaceError("shape", f"must be a Circle or a Polygon, got {self.shape!r}")
        dwell = check_finite("dwell_after_s", self.dwell_after_s)
        if not 0.0 < dwell <= MAX_DWELL_AFTER_S:
            raise PlaceError(
                "dwell_after_s", f"must be > 0 and <= {MAX_DWELL_AFTER_S:g} s, got {dwell!r}"
            )
        if self.hours is not None and not isinstance(self.hours, OperatingHours):
            raise PlaceError("hours", "must be OperatingHours or None")
        object.__setattr__(self, "dwell_after_s", dwell)
        object.__setattr__(self, "zone", time_zone(self.timezone))

    def is_active(self, at: datetime) -> bool:
        """Whether enter and dwell may fire at instant `at`: always without hours."""
        return self.hours is None or self.hours.is_open(at, self.zone)

    def relation(self, lat: float, lon: float, accuracy_m: float) -> Relation:
        """How the disc of `accuracy_m` metres around (`lat`, `lon`) relates to this
        geofence. Inputs are assumed valid (see validation); the index checks them."""
        return self.shape.relation(lat, lon, accuracy_m)
