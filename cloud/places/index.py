"""Which geofences a location fix is in: an STRtree per tenant, and an atomic swap on change.

The tree holds one latitude/longitude box per geofence (two when it straddles the
antimeridian), each conservatively enclosing everything the geofence can touch. It is
only a coarse filter: the answer is always decided in metres by the geofence itself
(`Geofence.relation`), so the index gives exactly what a loop over every geofence would
(the tests check this on random fixes), only faster.

Tenants are indexed apart: a fix from one shop's app can never match another shop's
store, and changing one tenant's geofences rebuilds only that tenant's tree.

`GeofenceIndex` is immutable. `GeofenceRegistry` holds the current one and replaces it
whole: a new index is built aside and then published by a single reference assignment,
so a reader (who takes `registry.current` once per question) sees the old index or the
new one, never a half-built one, and never waits for a rebuild.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import shapely

from cloud.places.geodesy import (
    FloatArray,
    cap_lat_lon_bounds,
    cap_lat_lon_bounds_many,
    ecef_many,
    split_at_antimeridian,
)
from cloud.places.geofences import CHORD_MARGIN_M, Circle, Geofence, Relation
from cloud.places.validation import (
    MAX_ACCURACY_M,
    PlaceError,
    check_accuracy,
    check_lat_lon,
    check_segment,
)

IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

#: Boxes enclose a geofence's reach and a fix's accuracy scaled by this plus BOX_MARGIN_M:
#: together they exceed the ground distance of anything the exact test can accept (plane
#: and chord distances within 25 km differ from it by under 1e-6 relative and 1 m).
BOX_SCALE = 1.0 + 1e-5
BOX_MARGIN_M = CHORD_MARGIN_M + 1.0


@dataclass(frozen=True, slots=True)
class Location:
    """The geofences a fix lies inside (its whole accuracy disc does) and those it
    intersects (a superset: inside, or straddling the border), in id order."""

    containing: tuple[Geofence, ...]
    intersecting: tuple[Geofence, ...]


NOWHERE = Location((), ())


@dataclass(frozen=True, slots=True)
class LocatedPairs:
    """Answers for a batch of `rows` fixes: one entry per (fix, geofence) pair that meet.

    `report[i]` is the fix's row in the input, `geofence[i]` a position in `geofences`,
    `inside[i]` whether the fix's disc lies inside. Sorted by fix, then geofence.
    """

    geofences: tuple[Geofence, ...]
    rows: int
    report: IntArray
    geofence: IntArray
    inside: BoolArray

    def __len__(self) -> int:
        return int(self.report.size)

    def locations(self) -> list[Location]:
        """A `Location` per input row, in input order (rows with no geofence: NOWHERE)."""
        rows = int(self.rows)
        bounds = np.searchsorted(self.report, np.arange(rows + 1))
        geofences = self.geofences
        located: list[Location] = []
        for row in range(rows):
            start, stop = int(bounds[row]), int(bounds[row + 1])
            if start == stop:
                located.append(NOWHERE)
                continue
            positions = self.geofence[start:stop].tolist()
            flags = self.inside[start:stop].tolist()
            located.append(Location(
                tuple(geofences[p] for p, inside in zip(positions, flags, strict=True) if inside),
                tuple(geofences[p] for p in positions),
            ))
        return located

    def for_report(self, row: int) -> Location:
        """The `Location` of input row `row`, as `GeofenceIndex.locate` would give it."""
        start, stop = np.searchsorted(self.report, [row, row + 1])
        intersecting = tuple(self.geofences[int(p)] for p in self.geofence[start:stop])
        containing = tuple(
            self.geofences[int(p)]
            for p, inside in zip(self.geofence[start:stop], self.inside[start:stop], strict=True)
            if inside
        )
        return Location(containing, intersecting)


class _TenantIndex:
    """One tenant's geofences: the tree and, column by column, what the batch test needs."""

    __slots__ = ("by_id", "cos_lat", "cos_lon", "geofences", "is_circle", "metric", "owner",
                 "reach", "segment_count", "segment_start", "segments", "sin_lat", "sin_lon",
                 "tree", "x0", "y0", "z0")

    def __init__(self, geofences: tuple[Geofence, ...]) -> None:
        self.geofences = geofences
        self.by_id = {geofence.id: position for position, geofence in enumerate(geofences)}
        frames = [geofence.shape.frame for geofence in geofences]

        def column(values: Iterable[float]) -> FloatArray:
            return np.fromiter(values, dtype=np.float64, count=len(geofences))

        self.x0 = column(frame.x0 for frame in frames)
        self.y0 = column(frame.y0 for frame in frames)
        self.z0 = column(frame.z0 for frame in frames)
        self.sin_lat = column(frame.sin_lat for frame in frames)
        self.cos_lat = column(frame.cos_lat for frame in frames)
        self.sin_lon = column(frame.sin_lon for frame in frames)
        self.cos_lon = column(frame.cos_lon for frame in frames)
        self.reach = column(geofence.shape.reach_m for geofence in geofences)
        owners, *corners = _boxes(column(frame.lat for frame in frames),
                                  column(frame.lon for frame in frames),
                                  self.reach * BOX_SCALE + BOX_MARGIN_M)
        self.tree = shapely.STRtree(shapely.box(*corners))
        self.owner: IntArray = owners
        self.is_circle: BoolArray = np.fromiter(
            (isinstance(geofence.shape, Circle) for geofence in geofences), dtype=np.bool_,
            count=len(geofences),
        )
        # fromiter: np.array would probe every shapely geometry as a possible sequence.
        self.metric = np.fromiter(
            (getattr(geofence.shape, "metric", None) for geofence in geofences), dtype=object,
            count=len(geofences),
        )
        edges = [getattr(geofence.shape, "segments", ()) for geofence in geofences]
        self.segment_count: IntArray = np.array([len(e) for e in edges], dtype=np.intp)
        self.segment_start: IntArray = np.concatenate(
            [[0], np.cumsum(self.segment_count)[:-1]]).astype(np.intp)
        #: Columns x, y, dx, dy, squared length of every polygon edge, geofence by geofence.
        self.segments: FloatArray = np.fromiter(
            itertools.chain.from_iterable(itertools.chain.from_iterable(edges)),
            dtype=np.float64, count=5 * int(self.segment_count.sum()),
        ).reshape(-1, 5)

    def candidates(self, lat: float, lon: float, accuracy_m: float) -> list[int]:
        """Positions of geofences whose box meets the fix's box, ascending."""
        bounds = cap_lat_lon_bounds(lat, lon, accuracy_m * BOX_SCALE + BOX_MARGIN_M)
        boxes = split_at_antimeridian(*bounds)
        if len(boxes) == 1:
            # A one-element array skips the scalar handling of STRtree.query (a third of
            # the time of a single check).
            query = np.empty(1, dtype=object)
            query[0] = shapely.box(*boxes[0])
        else:
            query = shapely.box(*np.array(boxes).T)
        hits = self.tree.query(query)[1]
        if hits.size == 0:
            return []
        return sorted({int(position) for position in self.owner[hits]})

    def locate(self, lat: float, lon: float, accuracy_m: float) -> Location:
        containing: list[Geofence] = []
        intersecting: list[Geofence] = []
        for position in self.candidates(lat, lon, accuracy_m):
            geofence = self.geofences[position]
            relation = geofence.relation(lat, lon, accuracy_m)
            if relation is Relation.OUTSIDE:
                continue
            intersecting.append(geofence)
            if relation is Relation.INSIDE:
                containing.append(geofence)
        if not intersecting:
            return NOWHERE
        return Location(tuple(containing), tuple(intersecting))

    def locate_many(self, lat: FloatArray, lon: FloatArray, accuracy: FloatArray
                    ) -> tuple[IntArray, IntArray, BoolArray]:
        """The batch form of `locate`, with the same tests in numpy and shapely ufuncs."""
        reports, positions = self._candidate_pairs(lat, lon, accuracy)
        if reports.size == 0:
            return reports, positions, np.zeros(0, dtype=np.bool_)
        px, py, pz = ecef_many(lat[reports], lon[reports])
        dx = px - self.x0[positions]
        dy = py - self.y0[positions]
        dz = pz - self.z0[positions]
        sin_lat = self.sin_lat[positions]
        cos_lon = self.cos_lon[positions]
        sin_lon = self.sin_lon[positions]
        east = -sin_lon * dx + cos_lon * dy
        north = -sin_lat * cos_lon * dx - sin_lat * sin_lon * dy + self.cos_lat[positions] * dz
        chord = np.sqrt(dx * dx + dy * dy + dz * dz)
        acc = accuracy[reports]
        near = chord <= self.reach[positions] + acc + CHORD_MARGIN_M
        inside = np.zeros(reports.size, dtype=np.bool_)
        touching = np.zeros(reports.size, dtype=np.bool_)

        circles = near & self.is_circle[positions]
        distance = np.hypot(east[circles], north[circles])
        radius = self.reach[positions[circles]]
        inside[circles] = distance + acc[circles] < radius
        touching[circles] = distance <= radius + acc[circles]

        polygons = np.flatnonzero(near & ~self.is_circle[positions])
        if polygons.size:
            pe, pn = east[polygons], north[polygons]
            on_border = self._near_segments(positions[polygons], pe, pn, acc[polygons])
            clear = ~on_border
            interior = np.zeros(polygons.size, dtype=np.bool_)
            interior[clear] = shapely.contains_xy(
                self.metric[positions[polygons[clear]]], pe[clear], pn[clear]
            )
            inside[polygons] = interior
            touching[polygons] = interior | on_border
        reports, positions, inside = reports[touching], positions[touching], inside[touching]
        order = np.lexsort((positions, reports))
        return reports[order], positions[order], inside[order]

    def _near_segments(self, positions: IntArray, east: FloatArray, north: FloatArray,
                       accuracy: FloatArray) -> BoolArray:
        """`geofences.near_segments` for many (point, polygon) pairs: every pair is
        repeated once per edge of its polygon, then reduced to its nearest edge."""
        counts = self.segment_count[positions]
        ends = np.cumsum(counts)
        firsts = ends - counts
        pair = np.repeat(np.arange(positions.size, dtype=np.intp), counts)
        edge = (np.arange(int(ends[-1]), dtype=np.intp) - np.repeat(firsts, counts)
                + np.repeat(self.segment_start[positions], counts))
        x, y, dx, dy, length2 = self.segments[edge].T
        wx = east[pair] - x
        wy = north[pair] - y
        along = np.minimum(np.maximum((wx * dx + wy * dy) / length2, 0.0), 1.0)
        cx = wx - along * dx
        cy = wy - along * dy
        nearest = np.minimum.reduceat(cx * cx + cy * cy, firsts)
        return nearest <= accuracy * accuracy

    def _candidate_pairs(self, lat: FloatArray, lon: FloatArray, accuracy: FloatArray
                         ) -> tuple[IntArray, IntArray]:
        rows, min_lon, min_lat, max_lon, max_lat = _boxes(
            lat, lon, accuracy * BOX_SCALE + BOX_MARGIN_M)
        split = rows.size > lat.size
        hits = self.tree.query(shapely.box(min_lon, min_lat, max_lon, max_lat))
        reports = rows[hits[0]]
        positions = self.owner[hits[1]]
        if split or self.owner.size != len(self.geofences):
            # A pair can be found through two boxes: keep it once.
            keys = np.unique(reports.astype(np.int64) * len(self.geofences) + positions)
            return ((keys // len(self.geofences)).astype(np.intp),
                    (keys % len(self.geofences)).astype(np.intp))
        return reports, positions


class GeofenceIndex:
    """An immutable index of geofences, by tenant. Build with `GeofenceIndex.build`."""

    __slots__ = ("_tenants", "version")

    def __init__(self, tenants: Mapping[str, _TenantIndex], version: int) -> None:
        self._tenants: Mapping[str, _TenantIndex] = MappingProxyType(dict(tenants))
        self.version = version

    @classmethod
    def build(cls, geofences: Iterable[Geofence], version: int = 0) -> GeofenceIndex:
        """Index `geofences`; ids must be unique within a tenant."""
        by_tenant: dict[str, list[Geofence]] = {}
        for geofence in geofences:
            if not isinstance(geofence, Geofence):
                raise PlaceError("geofences", f"must hold Geofence values, got {geofence!r}")
            by_tenant.setdefault(geofence.tenant, []).append(geofence)
        return cls({tenant: _tenant_index(tenant, members)
                    for tenant, members in by_tenant.items()}, version)

    def with_tenant(self, tenant: str, geofences: Iterable[Geofence], version: int
                    ) -> GeofenceIndex:
        """A new index in which `tenant` has exactly `geofences`; other tenants are shared."""
        check_segment("tenant", tenant)
        members = list(geofences)
        for geofence in members:
            if not isinstance(geofence, Geofence) or geofence.tenant != tenant:
                raise PlaceError("geofences", f"must all be Geofences of tenant {tenant!r}")
        tenants = dict(self._tenants)
        if members:
            tenants[tenant] = _tenant_index(tenant, members)
        else:
            tenants.pop(tenant, None)
        return GeofenceIndex(tenants, version)

    def __len__(self) -> int:
        return sum(len(part.geofences) for part in self._tenants.values())

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(self._tenants)

    def geofences(self, tenant: str) -> tuple[Geofence, ...]:
        """The tenant's geofences in id order (positions used by `locate_many`)."""
        part = self._tenants.get(tenant)
        return () if part is None else part.geofences

    def get(self, tenant: str, geofence_id: str) -> Geofence | None:
        part = self._tenants.get(tenant)
        if part is None:
            return None
        position = part.by_id.get(geofence_id)
        return None if position is None else part.geofences[position]

    def candidates(self, tenant: str, lat: float, lon: float, accuracy_m: float
                   ) -> tuple[Geofence, ...]:
        """Geofences the tree cannot rule out (a superset of `intersecting`)."""
        part, lat, lon, accuracy_m = self._checked(tenant, lat, lon, accuracy_m)
        if part is None:
            return ()
        return tuple(part.geofences[p] for p in part.candidates(lat, lon, accuracy_m))

    def locate(self, tenant: str, lat: float, lon: float, accuracy_m: float) -> Location:
        """Which of the tenant's geofences the fix's accuracy disc lies in and touches.

        Raises PlaceError for an invalid tenant id, coordinate or accuracy.
        """
        part, lat, lon, accuracy_m = self._checked(tenant, lat, lon, accuracy_m)
        if part is None:
            return NOWHERE
        return part.locate(lat, lon, accuracy_m)

    def containing(self, tenant: str, lat: float, lon: float, accuracy_m: float
                   ) -> tuple[Geofence, ...]:
        return self.locate(tenant, lat, lon, accuracy_m).containing

    def intersecting(self, tenant: str, lat: float, lon: float, accuracy_m: float
                     ) -> tuple[Geofence, ...]:
        return self.locate(tenant, lat, lon, accuracy_m).intersecting

    def locate_many(self, tenant: str, lat: Sequence[float] | FloatArray,
                    lon: Sequence[float] | FloatArray,
                    accuracy_m: Sequence[float] | FloatArray) -> LocatedPairs:
        """`locate` for many fixes of one tenant at once, in vectorised numpy and shapely.

        Same answers as calling `locate` row by row (the tests compare them). One invalid
        row rejects the batch with an PlaceError naming the row, e.g. ``lat[17]``.
        """
        check_segment("tenant", tenant)
        lats = _column("lat", lat)
        lons = _column("lon", lon)
        accuracies = _column("accuracy_m", accuracy_m)
        if not lats.size == lons.size == accuracies.size:
            raise PlaceError("lat", "lat, lon and accuracy_m must have the same length")
        _check_rows(lats, lons, accuracies)
        part = self._tenants.get(tenant)
        if part is None or lats.size == 0:
            empty = np.zeros(0, dtype=np.intp)
            return LocatedPairs(self.geofences(tenant), lats.size, empty, empty,
                                np.zeros(0, np.bool_))
        reports, positions, inside = part.locate_many(lats, lons, accuracies)
        return LocatedPairs(part.geofences, lats.size, reports, positions, inside)

    def _checked(self, tenant: str, lat: float, lon: float, accuracy_m: float
                 ) -> tuple[_TenantIndex | None, float, float, float]:
        lat, lon = check_lat_lon(lat, lon)
        accuracy_m = check_accuracy(accuracy_m)
        part = self._tenants.get(tenant)
        if part is None:
            check_segment("tenant", tenant)  # an indexed tenant's id was checked already
        return part, lat, lon, accuracy_m


def _tenant_index(tenant: str, members: list[Geofence]) -> _TenantIndex:
    members.sort(key=lambda geofence: geofence.id)
    for previous, geofence in itertools.pairwise(members):
        if previous.id == geofence.id:
            raise PlaceError("id", f"{geofence.id!r} is used twice in tenant {tenant!r}")
    return _TenantIndex(tuple(members))


def _boxes(lat: FloatArray, lon: FloatArray, radius_m: FloatArray
           ) -> tuple[IntArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Conservative boxes around caps of `radius_m` (see geodesy.cap_lat_lon_bounds): one
    per cap, plus one for the part of any cap past the antimeridian, wrapped to the other
    side. Returns each box's row in the input, then min_lon, min_lat, max_lon, max_lat."""
    min_lon, min_lat, max_lon, max_lat = cap_lat_lon_bounds_many(lat, lon, radius_m)
    rows = np.arange(lat.size, dtype=np.intp)
    west = min_lon < -180.0
    east = max_lon > 180.0
    split = west | east
    if not split.any():
        return rows, min_lon, min_lat, max_lon, max_lat
    extra_min = np.where(west, min_lon + 360.0, -180.0)[split]
    extra_max = np.where(west, 180.0, max_lon - 360.0)[split]
    return (np.concatenate([rows, rows[split]]),
            np.concatenate([np.maximum(min_lon, -180.0), extra_min]),
            np.concatenate([min_lat, min_lat[split]]),
            np.concatenate([np.minimum(max_lon, 180.0), extra_max]),
            np.concatenate([max_lat, max_lat[split]]))


def _column(name: str, values: Sequence[float] | FloatArray) -> FloatArray:
    try:
        column = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PlaceError(name, "must be a sequence of numbers") from error
    if column.ndim != 1:
        raise PlaceError(name, "must be one-dimensional")
    return column


def _check_rows(lat: FloatArray, lon: FloatArray, accuracy: FloatArray) -> None:
    """The row-by-row checks of `validation`, vectorised; the first bad row is named."""
    rules: list[tuple[str, FloatArray, BoolArray, str]] = [
        ("lat", lat, ~(np.abs(lat) <= 90.0), "must be finite and within [-90, 90] degrees"),
        ("lon", lon, ~(np.abs(lon) <= 180.0), "must be finite and within [-180, 180] degrees"),
        ("accuracy_m", accuracy, ~((accuracy >= 0.0) & (accuracy <= MAX_ACCURACY_M)),
         f"must be finite and within [0, {MAX_ACCURACY_M:g}] m"),
    ]
    for name, values, bad, rule in rules:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PlaceError(f"{name}[{row}]", f"{rule}, got {float(values[row])!r}")


class GeofenceRegistry:
    """The current `GeofenceIndex`, rebuilt aside and swapped in whole on every change.

    Readers use `current` without a lock; writers are serialised so two changes cannot
    both start from the same old index and lose one of them.
    """

    def __init__(self, geofences: Iterable[Geofence] = ()) -> None:
        self._write_lock = threading.Lock()
        self._current = GeofenceIndex.build(geofences, version=0)

    @property
    def current(self) -> GeofenceIndex:
        return self._current

    def replace_all(self, geofences: Iterable[Geofence]) -> GeofenceIndex:
        """Every tenant's geofences at once (at start-up, or after a bulk import)."""
        with self._write_lock:
            index = GeofenceIndex.build(geofences, version=self._current.version + 1)
            self._current = index
            return index

    def replace_tenant(self, tenant: str, geofences: Iterable[Geofence]) -> GeofenceIndex:
        """One tenant's complete set of geofences; only that tenant's tree is rebuilt."""
        with self._write_lock:
            index = self._current.with_tenant(tenant, geofences, self._current.version + 1)
            self._current = index
            return index

    def put(self, geofence: Geofence) -> GeofenceIndex:
        """Add a geofence, or replace the one with its tenant and id."""
        with self._write_lock:
            current = self._current
            others = [g for g in current.geofences(geofence.tenant) if g.id != geofence.id]
            index = current.with_tenant(geofence.tenant, [*others, geofence],
                                        current.version + 1)
            self._current = index
            return index

    def remove(self, tenant: str, geofence_id: str) -> GeofenceIndex:
        """Drop a geofence (no-op if absent); trackers then report exits from it."""
        with self._write_lock:
            current = self._current
            remaining = [g for g in current.geofences(tenant) if g.id != geofence_id]
            index = current.with_tenant(tenant, remaining, current.version + 1)
            self._current = index
            return index
