"""Places: stores' geofences, and which of them an app user's location reports are in.

The geometry needs no database and does no I/O: shapes in WGS84 degrees measured in
metres (`geodesy`), operating hours in the store's zone (`hours`), geofences
(`geofences`), an STRtree index swapped atomically on change (`index`), enter/dwell/exit
with hysteresis (`tracker`), and JSON definitions (`parse`); every bad input raises
`PlaceError`. Stores, stored geofences and who is inside which are kept in the database
(`models`, `crud`), and location reports are applied there (`locations`).
"""

from cloud.places.geofences import Circle, Geofence, Polygon, Relation
from cloud.places.hours import OpeningInterval, OperatingHours, Weekday
from cloud.places.index import GeofenceIndex, GeofenceRegistry, LocatedPairs, Location
from cloud.places.parse import GeofenceSpec, LocationReportSpec, parse_geofence
from cloud.places.tracker import GeofenceTracker, GeofenceTransition, LocationReport
from cloud.places.validation import MAX_ACCURACY_M, PlaceError

__all__ = [
    "MAX_ACCURACY_M",
    "Circle",
    "Geofence",
    "GeofenceIndex",
    "GeofenceRegistry",
    "GeofenceSpec",
    "GeofenceTracker",
    "GeofenceTransition",
    "LocatedPairs",
    "Location",
    "LocationReport",
    "LocationReportSpec",
    "OpeningInterval",
    "OperatingHours",
    "PlaceError",
    "Polygon",
    "Relation",
    "Weekday",
    "parse_geofence",
]
