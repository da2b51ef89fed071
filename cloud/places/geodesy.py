"""Metres, not degrees: local tangent planes on the WGS84 ellipsoid, in plain math.

A degree of longitude is 111 km at the equator and 38 km in Oslo, so geometry done in
degrees makes a round geofence an ellipse and an accuracy radius meaningless. Every
geofence therefore gets its own local frame: the plane tangent to the WGS84 ellipsoid at a
point inside the geofence, with x pointing east and y north, in metres (the "ENU" frame
of surveying, dropping "up"). A location is mapped into a frame exactly (geodetic ->
earth-centred cartesian -> rotation), so the frames need no library and have no seam at
the antimeridian; the poles are ordinary points too.

Error bound. A point at ground distance s from the frame's origin lands at a plane
distance between s*cos(s/R) and s, and lengths near it are scaled by a factor between
cos(s/R) and 1, where R >= 6,335 km is the smallest radius of curvature of the ellipsoid.
Any distance measured in a frame, between points within s of its origin, is therefore
short by a relative error of at most 1 - cos(s/R) ~= s**2 / (2 * R**2):

    s (distance from the origin)    relative error    at the edge
    300 m (a store)                 < 1.2e-9          < 0.001 mm
    2 km (a mall, an outlet park)   < 5.0e-8          < 0.1 mm
    25 km (largest geofence + fix)  < 7.8e-6          < 0.2 m

The tests check this against Vincenty's ellipsoidal distances (and haversine) at several
latitudes, up to 89.5 degrees, and across the antimeridian. Measured distances are
ellipsoidal: a spherical-earth formula (haversine) would be up to 0.56% off instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: WGS84, the datum of GPS fixes and of GeoJSON.
WGS84_A_M = 6_378_137.0
WGS84_F = 1.0 / 298.257223563
WGS84_B_M = WGS84_A_M * (1.0 - WGS84_F)
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)

#: The smallest radius of curvature anywhere on the ellipsoid (north-south, at the
#: equator): a path of s metres changes the latitude by at most s / this, in radians.
MIN_CURVATURE_RADIUS_M = WGS84_A_M * (1.0 - WGS84_E2)

#: Bounding boxes are widened by this many degrees so that float rounding in the box
#: arithmetic (about 1e-14 degrees) can never exclude a point that is truly inside.
BOX_ROUNDING_DEG = 1e-9


def ecef(lat: float, lon: float) -> tuple[float, float, float]:
    """Earth-centred, earth-fixed cartesian metres of a point on the WGS84 ellipsoid."""
    phi = math.radians(lat)
    lam = math.radians(lon)
    sin_phi = math.sin(phi)
    cos_phi = math.cos(phi)
    prime_vertical = WGS84_A_M / math.sqrt(1.0 - WGS84_E2 * sin_phi * sin_phi)
    return (
        prime_vertical * cos_phi * math.cos(lam),
        prime_vertical * cos_phi * math.sin(lam),
        prime_vertical * (1.0 - WGS84_E2) * sin_phi,
    )


def ecef_many(lat: FloatArray, lon: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """`ecef` for arrays of points."""
    phi = np.radians(lat)
    lam = np.radians(lon)
    sin_phi = np.sin(phi)
    cos_phi = np.cos(phi)
    prime_vertical = WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * sin_phi * sin_phi)
    return (
        prime_vertical * cos_phi * np.cos(lam),
        prime_vertical * cos_phi * np.sin(lam),
        prime_vertical * (1.0 - WGS84_E2) * sin_phi,
    )


def geodetic(x: float, y: float, z: float) -> tuple[float, float]:
    """(lat, lon) in degrees of a point on the ellipsoid's surface given in ECEF metres.

    On the surface tan(lat) = z / (p * (1 - e^2)) exactly, so no iteration is needed.
    """
    p = math.hypot(x, y)
    lat = math.degrees(math.atan2(z, p * (1.0 - WGS84_E2)))
    lon = math.degrees(math.atan2(y, x)) if p > 0.0 else 0.0
    return lat, lon


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """East/north metres on the plane tangent to the ellipsoid at (`lat`, `lon`).

    Build with `LocalFrame.at(lat, lon)`; see the module docstring for the error bound.
    """

    lat: float
    lon: float
    x0: float
    y0: float
    z0: float
    sin_lat: float
    cos_lat: float
    sin_lon: float
    cos_lon: float

    @classmethod
    def at(cls, lat: float, lon: float) -> LocalFrame:
        phi = math.radians(lat)
        lam = math.radians(lon)
        x0, y0, z0 = ecef(lat, lon)
        return cls(lat, lon, x0, y0, z0, math.sin(phi), math.cos(phi), math.sin(lam),
                   math.cos(lam))

    def offset(self, lat: float, lon: float) -> tuple[float, float, float]:
        """(east, north, chord): the point's plane coordinates and its straight-line
        (3-D) distance from the origin. The chord tells a point near the origin from
        one on the far side of the earth, which the plane alone cannot: both project
        near (0, 0)."""
        x, y, z = ecef(lat, lon)
        dx = x - self.x0
        dy = y - self.y0
        dz = z - self.z0
        east = -self.sin_lon * dx + self.cos_lon * dy
        north = (-self.sin_lat * self.cos_lon * dx - self.sin_lat * self.sin_lon * dy
                 + self.cos_lat * dz)
        return east, north, math.sqrt(dx * dx + dy * dy + dz * dz)

    def to_plane(self, lat: float, lon: float) -> tuple[float, float]:
        """(east, north) metres of a point; meaningful only for points near the origin."""
        east, north, _chord = self.offset(lat, lon)
        return east, north

    def to_lat_lon(self, east: float, north: float) -> tuple[float, float]:
        """The point on the ellipsoid whose plane coordinates are (`east`, `north`).

        Moves from the tangent point along the frame's "up" axis until the ellipsoid
        is met (the root of a quadratic nearest the plane): the exact inverse of
        `to_plane` for points within a quarter of the earth of the origin.
        """
        ux, uy, uz = self.cos_lat * self.cos_lon, self.cos_lat * self.sin_lon, self.sin_lat
        qx = self.x0 - self.sin_lon * east - self.sin_lat * self.cos_lon * north
        qy = self.y0 + self.cos_lon * east - self.sin_lat * self.sin_lon * north
        qz = self.z0 + self.cos_lat * north
        a2 = WGS84_A_M * WGS84_A_M
        b2 = WGS84_B_M * WGS84_B_M
        quad_a = (ux * ux + uy * uy) / a2 + uz * uz / b2
        quad_b = 2.0 * ((qx * ux + qy * uy) / a2 + qz * uz / b2)
        quad_c = (qx * qx + qy * qy) / a2 + qz * qz / b2 - 1.0
        discriminant = max(quad_b * quad_b - 4.0 * quad_a * quad_c, 0.0)
        # -2c / (b + sqrt(...)) is the small root without cancellation.
        up = -2.0 * quad_c / (quad_b + math.sqrt(discriminant))
        return geodetic(qx + ux * up, qy + uy * up, qz + uz * up)


def cap_lat_lon_bounds(lat: float, lon: float, radius_m: float) -> tuple[float, float, float,
                                                                          float]:
    """(min_lon, min_lat, max_lon, max_lat) in degrees around every point within
    `radius_m` of (lat, lon) along the ellipsoid, conservatively.

    The latitude changes by at most s / MIN_CURVATURE_RADIUS_M along a path of s metres,
    and the longitude by at most s / (a * cos(latitude)), a being the smallest east-west
    radius. The longitude range may run past +-180 (the caller splits it at the
    antimeridian) and is the whole circle when the cap reaches a pole.
    """
    dlat = math.degrees(radius_m / MIN_CURVATURE_RADIUS_M) + BOX_ROUNDING_DEG
    max_abs_lat = abs(lat) + dlat
    if max_abs_lat >= 90.0:
        return -180.0, max(lat - dlat, -90.0), 180.0, min(lat + dlat, 90.0)
    dlon = math.degrees(radius_m / (WGS84_A_M * math.cos(math.radians(max_abs_lat))))
    dlon += BOX_ROUNDING_DEG
    if dlon >= 180.0:
        return -180.0, lat - dlat, 180.0, lat + dlat
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def cap_lat_lon_bounds_many(
    lat: FloatArray, lon: FloatArray, radius_m: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """`cap_lat_lon_bounds` for arrays, with the same arithmetic."""
    dlat = np.degrees(radius_m / MIN_CURVATURE_RADIUS_M) + BOX_ROUNDING_DEG
    max_abs_lat = np.abs(lat) + dlat
    polar = max_abs_lat >= 90.0
    with np.errstate(divide="ignore", invalid="ignore"):
        cos_max = np.cos(np.radians(np.where(polar, 0.0, max_abs_lat)))
        dlon = np.degrees(radius_m / (WGS84_A_M * cos_max)) + BOX_ROUNDING_DEG
    whole = polar | (dlon >= 180.0)
    min_lon = np.where(whole, -180.0, lon - dlon)
    max_lon = np.where(whole, 180.0, lon + dlon)
    min_lat = np.where(polar, np.maximum(lat - dlat, -90.0), lat - dlat)
    max_lat = np.where(polar, np.minimum(lat + dlat, 90.0), lat + dlat)
    return min_lon, min_lat, max_lon, max_lat


def split_at_antimeridian(
    min_lon: float, min_lat: float, max_lon: float, max_lat: float
) -> list[tuple[float, float, float, float]]:
    """One box, or two when its longitude range runs past +-180 degrees."""
    if min_lon < -180.0:
        return [(-180.0, min_lat, max_lon, max_lat), (min_lon + 360.0, min_lat, 180.0, max_lat)]
    if max_lon > 180.0:
        return [(min_lon, min_lat, 180.0, max_lat), (-180.0, min_lat, max_lon - 360.0, max_lat)]
    return [(min_lon, min_lat, max_lon, max_lat)]
