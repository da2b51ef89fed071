"""The one error places raise, and the checks every coordinate and accuracy goes through.

Locations arrive from phones and geofences from admins: both can be wrong in ways a
test never imagined (NaN from a broken GPS stack, swapped lat/lon, a negative accuracy).
Every such value is refused here with an `PlaceError` that names the field, so a caller
can count and log it; nothing downstream ever sees a value these checks did not pass.
"""

from __future__ import annotations

import math
import re

from shared.topics import SEGMENT_PATTERN

#: A fix vaguer than this (cell tower or IP geolocation) cannot tell a store visit from
#: passing through the district, and bounding it bounds the search box of every query.
MAX_ACCURACY_M = 5_000.0

#: Ids of geofences and subjects end up in logs, URLs and database keys: printable,
#: no separators that need escaping, and short.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")



class PlaceError(ValueError):
    """A coordinate, accuracy, shape, schedule or id that places cannot use.

    `field` names the offending input (e.g. ``"lat"``, ``"shape.radius_m"``,
    ``"hours.fri[0]"``) and `reason` says which rule failed; the message is both, and never
    more of the input than the one bad value.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_finite(field: str, value: object) -> float:
    """`value` as a float if it is a real, finite number (bools are not numbers here)."""
    if not _is_number(value):
        raise PlaceError(field, f"must be a number, got {type(value).__name__}")
    number = float(value)  # type: ignore[arg-type]  # _is_number checked int | float
    if not math.isfinite(number):
        raise PlaceError(field, f"must be finite, got {number!r}")
    return number


def check_lat_lon(lat: object, lon: object, field: str = "") -> tuple[float, float]:
    """Latitude in [-90, 90] and longitude in [-180, 180] degrees (WGS84), both finite."""
    if (type(lat) is float and type(lon) is float  # the common case, checked cheaply
            and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return lat, lon
    prefix = f"{field}." if field else ""
    lat_value = check_finite(f"{prefix}lat", lat)
    lon_value = check_finite(f"{prefix}lon", lon)
    if not -90.0 <= lat_value <= 90.0:
        raise PlaceError(f"{prefix}lat", f"must be within [-90, 90] degrees, got {lat_value!r}")
    if not -180.0 <= lon_value <= 180.0:
        raise PlaceError(
            f"{prefix}lon", f"must be within [-180, 180] degrees, got {lon_value!r}"
        )
    return lat_value, lon_value


def check_accuracy(accuracy_m: object, field: str = "accuracy_m") -> float:
    """A horizontal accuracy radius in metres: 0 (exact) up to MAX_ACCURACY_M."""
    if type(accuracy_m) is float and 0.0 <= accuracy_m <= MAX_ACCURACY_M:
        return accuracy_m
    value = check_finite(field, accuracy_m)
    if value < 0.0:
        raise PlaceError(field, f"must be >= 0 m, got {value!r}")
    if value > MAX_ACCURACY_M:
        raise PlaceError(
            field, f"must be <= {MAX_ACCURACY_M:g} m (a vaguer fix says nothing about a store)"
            f", got {value!r}"
        )
    return value


def check_id(field: str, value: object) -> str:
    """A geofence or subject id: 1-128 printable characters (see ID_PATTERN)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise PlaceError(
            field, "must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '@', '-',"
            " starting with a letter or digit"
        )
    return value


def check_segment(field: str, value: object) -> str:
    """A tenant or store id, by the MQTT topic segment rule, so a geofence's store is the
    same string the store's gateway publishes under."""
    if not isinstance(value, str) or not SEGMENT_PATTERN.fullmatch(value):
        raise PlaceError(
            field, "must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter"
            " or digit"
        )
    return value
