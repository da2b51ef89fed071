"""Local frames against independent distances: Vincenty on the ellipsoid, haversine on
the sphere, and textbook lengths of a degree."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from cloud.places.geodesy import (
    MIN_CURVATURE_RADIUS_M,
    WGS84_A_M,
    WGS84_F,
    LocalFrame,
    cap_lat_lon_bounds,
    cap_lat_lon_bounds_many,
    ecef,
    ecef_many,
    geodetic,
    split_at_antimeridian,
)

#: Vincenty's iteration stops at 1e-12 rad of longitude: about 1e-6 m of slack.
REFERENCE_SLACK_M = 1e-6


def vincenty_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Vincenty's inverse formula on WGS84 (accurate to well under a millimetre)."""
    b = WGS84_A_M * (1 - WGS84_F)
    f = WGS84_F
    u1 = math.atan((1 - f) * math.tan(math.radians(lat1)))
    u2 = math.atan((1 - f) * math.tan(math.radians(lat2)))
    big_l = math.radians(((lon2 - lon1 + 540.0) % 360.0) - 180.0)
    lam = big_l
    sin_u1, cos_u1, sin_u2, cos_u2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    for _ in range(200):
        sin_sigma = math.hypot(cos_u2 * math.sin(lam),
                               cos_u1 * sin_u2 - sin_u1 * cos_u2 * math.cos(lam))
        if sin_sigma == 0.0:
            return 0.0
        cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * math.cos(lam)
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = cos_u1 * cos_u2 * math.sin(lam) / sin_sigma
        cos2_alpha = 1 - sin_alpha * sin_alpha
        cos_2sm = cos_sigma - 2 * sin_u1 * sin_u2 / cos2_alpha if cos2_alpha else 0.0
        c = f / 16 * cos2_alpha * (4 + f * (4 - 3 * cos2_alpha))
        previous = lam
        lam = big_l + (1 - c) * f * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm * cos_2sm)))
        if abs(lam - previous) < 1e-13:
            break
    u_sq = cos2_alpha * (WGS84_A_M ** 2 - b * b) / (b * b)
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    delta_sigma = big_b * sin_sigma * (cos_2sm + big_b / 4 * (
        cos_sigma * (-1 + 2 * cos_2sm ** 2)
        - big_b / 6 * cos_2sm * (-3 + 4 * sin_sigma ** 2) * (-3 + 4 * cos_2sm ** 2)))
    return b * big_a * (sigma - delta_sigma)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    radius = 6_371_008.8  # mean earth radius
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlam = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(h))


def bound(distance_from_origin_m: float) -> float:
    """The documented relative error of a frame for points this far from its origin."""
    return 1.0 - math.cos(distance_from_origin_m / MIN_CURVATURE_RADIUS_M)


def dms(degrees: int, minutes: int, seconds: float) -> float:
    return math.copysign(abs(degrees) + minutes / 60 + seconds / 3600, degrees)


def test_the_reference_reproduces_a_published_geodesic() -> None:
    """Flinders Peak to Buninyong, Vincenty's worked example (Geoscience Australia)."""
    distance = vincenty_m(dms(-37, 57, 3.72030), dms(144, 25, 29.52440),
                          dms(-37, 39, 10.15610), dms(143, 55, 35.38390))
    assert distance == pytest.approx(54_972.271, abs=0.001)


def test_a_hundredth_of_a_degree_on_the_equator() -> None:
    """Along the equator a degree of longitude is a * pi / 180 = 111,319.49 m."""
    frame = LocalFrame.at(0.0, 10.0)
    east, north = frame.to_plane(0.0, 10.01)
    assert math.hypot(east, north) == pytest.approx(1_113.1949079, rel=bound(1_200.0) + 1e-12)
    assert abs(north) < 1e-6


def test_a_hundredth_of_a_degree_of_latitude_at_the_pole_and_the_equator() -> None:
    """A degree of latitude is 110,574 m at the equator and 111,694 m at the poles."""
    at_equator = LocalFrame.at(0.0, 0.0).to_plane(0.01, 0.0)
    at_pole = LocalFrame.at(90.0, 0.0).to_plane(89.99, 0.0)
    assert math.hypot(*at_equator) == pytest.approx(1_105.74, abs=0.01)
    assert math.hypot(*at_pole) == pytest.approx(1_116.94, abs=0.01)


PLACES = [
    pytest.param(0.0, 0.0, id="equator"),
    pytest.param(40.4168, -3.7038, id="madrid"),
    pytest.param(-33.8688, 151.2093, id="sydney"),
    pytest.param(59.9139, 10.7522, id="oslo"),
    pytest.param(69.6492, 18.9553, id="tromso"),
    pytest.param(78.2232, 15.6267, id="longyearbyen"),
    pytest.param(89.5, 45.0, id="near-north-pole"),
    pytest.param(-89.9, -120.0, id="near-south-pole"),
    pytest.param(-16.8, 179.999, id="taveuni-antimeridian"),
    pytest.param(65.0, -180.0, id="bering-antimeridian"),
]


@pytest.mark.parametrize(("lat", "lon"), PLACES)
def test_distances_a_few_km_apart_match_vincenty(lat: float, lon: float) -> None:
    """Points up to 5 km from the origin (so up to 10 km apart), in every direction."""
    rng = random.Random(f"{lat},{lon}")
    frame = LocalFrame.at(lat, lon)
    reach = 5_000.0
    for _ in range(60):
        points = []
        for _ in range(2):
            distance, angle = reach * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            points.append(frame.to_lat_lon(distance * math.cos(angle),
                                           distance * math.sin(angle)))
        (lat1, lon1), (lat2, lon2) = points
        east1, north1 = frame.to_plane(lat1, lon1)
        east2, north2 = frame.to_plane(lat2, lon2)
        planar = math.hypot(east1 - east2, north1 - north2)
        reference = vincenty_m(lat1, lon1, lat2, lon2)
        assert abs(planar - reference) <= bound(reach) * reference + REFERENCE_SLACK_M
        # The spherical formula is a different earth: close, but only to half a percent.
        assert planar == pytest.approx(haversine_m(lat1, lon1, lat2, lon2), rel=6e-3, abs=1e-6)


@pytest.mark.parametrize(("lat", "lon"), PLACES)
def test_distance_from_the_origin_at_25_km_stays_within_the_bound(lat: float, lon: float
                                                                 ) -> None:
    """The largest geofence plus an accuracy disc: the docstring's 0.2 m at 25 km."""
    frame = LocalFrame.at(lat, lon)
    for angle in np.linspace(0, 2 * math.pi, 12, endpoint=False):
        point = frame.to_lat_lon(25_000.0 * math.cos(angle), 25_000.0 * math.sin(angle))
        reference = vincenty_m(lat, lon, *point)
        assert abs(25_000.0 - reference) <= 0.2
        assert abs(25_000.0 - reference) <= bound(25_000.0) * reference + REFERENCE_SLACK_M


@pytest.mark.parametrize(("lat", "lon"), PLACES)
def test_to_lat_lon_inverts_to_plane(lat: float, lon: float) -> None:
    frame = LocalFrame.at(lat, lon)
    rng = random.Random(3)
    for _ in range(50):
        east, north = rng.uniform(-20_000, 20_000), rng.uniform(-20_000, 20_000)
        again = frame.to_plane(*frame.to_lat_lon(east, north))
        assert again == pytest.approx((east, north), abs=1e-6)


def test_the_antimeridian_is_no_seam() -> None:
    """Two shops 222 m apart on either side of 180 degrees are 222 m apart."""
    frame = LocalFrame.at(-16.8, 179.999)
    east, north = frame.to_plane(-16.8, -179.999)
    assert east == pytest.approx(vincenty_m(-16.8, 179.999, -16.8, -179.999), abs=1e-3)
    assert east == pytest.approx(213.2, abs=0.1)
    assert abs(north) < 0.01


def test_the_far_side_of_the_earth_has_a_long_chord() -> None:
    """Where the origin's vertical leaves the earth on the other side, the plane says
    (0, 0); only the chord tells it from the origin."""
    frame = LocalFrame.at(40.0, -3.0)
    up = np.array([frame.cos_lat * frame.cos_lon, frame.cos_lat * frame.sin_lon,
                   frame.sin_lat])
    origin = np.array([frame.x0, frame.y0, frame.z0])
    scale = np.array([WGS84_A_M ** -2, WGS84_A_M ** -2, (WGS84_A_M * (1 - WGS84_F)) ** -2])
    # |origin + t * up| on the ellipsoid: t = 0 here, t = -2 <origin, up> / <up, up> there.
    t = -2.0 * float(np.sum(scale * origin * up)) / float(np.sum(scale * up * up))
    far_lat, far_lon = geodetic(*(origin + t * up))
    east, north, chord = frame.offset(far_lat, far_lon)
    assert math.hypot(east, north) < 1.0
    assert chord > 12_700_000.0


def test_ecef_many_matches_ecef() -> None:
    lats = np.array([0.0, 45.0, -89.9, 90.0, 12.3])
    lons = np.array([0.0, -180.0, 179.9, 0.0, -45.6])
    xs, ys, zs = ecef_many(lats, lons)
    for position, (lat, lon) in enumerate(zip(lats, lons, strict=True)):
        assert ecef(float(lat), float(lon)) == pytest.approx(
            (xs[position], ys[position], zs[position]), abs=1e-6)


def in_boxes(boxes: list[tuple[float, float, float, float]], lat: float, lon: float) -> bool:
    return any(west <= lon <= east and south <= lat <= north
               for west, south, east, north in boxes)


@pytest.mark.parametrize(("lat", "lon"), [
    *PLACES, pytest.param(89.999, 0.0, id="at-the-pole"), pytest.param(0.0, -180.0, id="west")])
@pytest.mark.parametrize("radius_m", [1.0, 300.0, 5_000.0, 25_000.0])
def test_cap_bounds_hold_every_point_of_the_cap(lat: float, lon: float, radius_m: float
                                                ) -> None:
    """Points on the cap's rim (ground distance just under r) and halfway in, all around.
    Longitudes come back normalised to [-180, 180], as GPS gives them."""
    boxes = split_at_antimeridian(*cap_lat_lon_bounds(lat, lon, radius_m))
    frame = LocalFrame.at(lat, lon)
    # In the plane a point at ground distance r lies a little nearer (r * (1 - ~1e-6)).
    rim = radius_m / (1.0 + 1e-5)
    for angle in np.linspace(0, 2 * math.pi, 72, endpoint=False):
        for fraction in (0.5, 1.0):
            point_lat, point_lon = frame.to_lat_lon(rim * fraction * math.cos(angle),
                                                    rim * fraction * math.sin(angle))
            assert vincenty_m(lat, lon, point_lat, point_lon) <= radius_m
            assert in_boxes(boxes, point_lat, point_lon), (point_lat, point_lon)


def test_cap_bounds_reaching_a_pole_take_every_longitude() -> None:
    west, south, east, north = cap_lat_lon_bounds(89.99, 10.0, 2_000.0)
    assert (west, east, north) == (-180.0, 180.0, 90.0)
    assert south < 89.99


def test_split_at_antimeridian() -> None:
    assert split_at_antimeridian(179.0, 1.0, 181.0, 2.0) == [(179.0, 1.0, 180.0, 2.0),
                                                             (-180.0, 1.0, -179.0, 2.0)]
    assert split_at_antimeridian(-181.0, 1.0, -179.0, 2.0) == [(-180.0, 1.0, -179.0, 2.0),
                                                               (179.0, 1.0, 180.0, 2.0)]
    assert split_at_antimeridian(-1.0, 1.0, 1.0, 2.0) == [(-1.0, 1.0, 1.0, 2.0)]


def test_cap_bounds_many_match_the_scalar_bounds() -> None:
    rng = random.Random(5)
    lats = np.array([rng.uniform(-90, 90) for _ in range(300)] + [89.999, -90.0, 0.0])
    lons = np.array([rng.uniform(-180, 180) for _ in range(300)] + [0.0, 180.0, -180.0])
    radii = np.array([rng.uniform(0, 30_000) for _ in range(300)] + [5.0, 5.0, 0.0])
    many = cap_lat_lon_bounds_many(lats, lons, radii)
    for row in range(lats.size):
        scalar = cap_lat_lon_bounds(float(lats[row]), float(lons[row]), float(radii[row]))
        assert scalar == pytest.approx(tuple(column[row] for column in many), abs=1e-9)
