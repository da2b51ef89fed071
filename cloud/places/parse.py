"""Geofences and location reports from JSON-able data, as admins and apps will send them.

The pydantic models check the structure (they can serve as API bodies as they are, so a
bad definition is a 422 with a path to the bad field); the domain types check the rest
(valid polygon, sizes, time zone). `parse_geofence` and `parse_location_report` wrap both
and raise only PlaceError, whose `field` is the path of the first problem.

A geofence definition::

    {"id": "madrid-centro", "tenant": "acme", "store": "madrid-01",
     "shape": {"circle": {"lat": 40.4168, "lon": -3.7038, "radius_m": 120}},
     "dwell_after_s": 300, "timezone": "Europe/Madrid",
     "hours": {"mon": [["09:30", "21:00"]], "fri": [["09:30", "21:00"], ["22:00", "02:00"]]}}

`shape` may instead be a GeoJSON Polygon (RFC 7946: rings of [lon, lat] or
[lon, lat, altitude] positions, closed; the first ring is the shell, the rest holes).
`hours` is optional (always active); times are the store's wall clock, "HH:MM", and an
interval closing at or before its opening runs past midnight.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictFloat,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)

from cloud.places.geofences import Circle, Geofence, Polygon, Shape
from cloud.places.hours import OpeningInterval, OperatingHours, Weekday
from cloud.places.tracker import LocationReport
from cloud.places.validation import PlaceError

WeekdayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WallTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Position = Annotated[list[StrictFloat], Field(min_length=2, max_length=3)]

_FORBID = ConfigDict(extra="forbid")


class CircleSpec(BaseModel):
    model_config = _FORBID

    lat: StrictFloat
    lon: StrictFloat
    radius_m: StrictFloat


class CircleShapeSpec(BaseModel):
    model_config = _FORBID

    circle: CircleSpec


class PolygonShapeSpec(BaseModel):
    """A GeoJSON Polygon geometry (a bbox member is allowed and ignored)."""

    model_config = _FORBID

    type: Literal["Polygon"]
    coordinates: Annotated[list[Annotated[list[Position], Field(max_length=1_000)]],
                           Field(min_length=1, max_length=100)]
    bbox: list[StrictFloat] | None = None


_SHAPE_TAGS = ("circle", "polygon")


def _shape_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "circle" in value:
            return "circle"
        if "type" in value or "coordinates" in value:
            return "polygon"
        return None
    if isinstance(value, CircleShapeSpec):
        return "circle"
    if isinstance(value, PolygonShapeSpec):
        return "polygon"
    return None


ShapeSpec = Annotated[
    Annotated[CircleShapeSpec, Tag("circle")] | Annotated[PolygonShapeSpec, Tag("polygon")],
    Discriminator(
        _shape_tag,
        custom_error_type="shape",
        custom_error_message='expected {"circle": {"lat", "lon", "radius_m"}} or a GeoJSON'
                             ' Polygon',
    ),
]


class GeofenceSpec(BaseModel):
    """A geofence as JSON. Validating one builds the domain `Geofence` (`.geofence`)."""

    model_config = _FORBID

    id: str
    tenant: str
    store: str
    shape: ShapeSpec
    dwell_after_s: StrictFloat
    timezone: str
    hours: dict[WeekdayName, Annotated[list[tuple[WallTime, WallTime]],
                                       Field(max_length=24)]] | None = None
    _geofence: Geofence | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _build(self) -> GeofenceSpec:
        self._geofence = Geofence(
            id=self.id,
            tenant=self.tenant,
            store=self.store,
            shape=_shape(self.shape),
            dwell_after_s=self.dwell_after_s,
            timezone=self.timezone,
            hours=None if self.hours is None else _hours(self.hours),
        )
        return self

    @property
    def geofence(self) -> Geofence:
        assert self._geofence is not None  # set by the validator of every instance
        return self._geofence


class LocationReportSpec(BaseModel):
    """A location report from the app, as JSON."""

    model_config = _FORBID

    tenant: str
    subject: str
    lat: StrictFloat
    lon: StrictFloat
    accuracy_m: StrictFloat
    at: AwareDatetime

    def to_report(self) -> LocationReport:
        return LocationReport(self.tenant, self.subject, self.lat, self.lon, self.accuracy_m,
                              self.at)


def _shape(spec: CircleShapeSpec | PolygonShapeSpec) -> Shape:
    if isinstance(spec, CircleShapeSpec):
        return Circle(spec.circle.lat, spec.circle.lon, spec.circle.radius_m)
    rings = [tuple((position[0], position[1]) for position in ring)
             for ring in spec.coordinates]
    return Polygon(rings[0], tuple(rings[1:]))


def _hours(spec: Mapping[WeekdayName, list[tuple[str, str]]]) -> OperatingHours:
    return OperatingHours(tuple(
        OpeningInterval(Weekday[name.upper()], time.fromisoformat(opens),
                        time.fromisoformat(closes))
        for name, intervals in spec.items()
        for opens, closes in intervals
    ))


def parse_geofence(data: object) -> Geofence:
    """A `Geofence` from a JSON-able dict; PlaceError naming the first bad field."""
    try:
        return GeofenceSpec.model_validate(data).geofence
    except ValidationError as error:
        raise _place_error(error) from None


def parse_location_report(data: object) -> LocationReport:
    """A `LocationReport` from a JSON-able dict; PlaceError naming the first bad field."""
    try:
        return LocationReportSpec.model_validate(data).to_report()
    except ValidationError as error:
        raise _place_error(error) from None


def geofence_to_dict(geofence: Geofence) -> dict[str, Any]:
    """The JSON-able definition of `geofence`: `parse_geofence` gives it back."""
    shape: dict[str, Any]
    if isinstance(geofence.shape, Circle):
        circle = geofence.shape
        shape = {"circle": {"lat": circle.lat, "lon": circle.lon, "radius_m": circle.radius_m}}
    else:
        rings = (geofence.shape.exterior, *geofence.shape.holes)
        shape = {"type": "Polygon",
                 "coordinates": [[[lon, lat] for lon, lat in ring] for ring in rings]}
    hours: dict[str, list[list[str]]] | None = None
    if geofence.hours is not None:
        hours = {}
        for interval in geofence.hours.intervals:
            hours.setdefault(interval.weekday.name.lower(), []).append(
                [interval.opens.strftime("%H:%M"), interval.closes.strftime("%H:%M")]
            )
    return {"id": geofence.id, "tenant": geofence.tenant, "store": geofence.store,
            "shape": shape, "dwell_after_s": geofence.dwell_after_s,
            "timezone": geofence.timezone, "hours": hours}


def _place_error(error: ValidationError) -> PlaceError:
    """The first problem as a PlaceError: the domain's own, or pydantic's with its path."""
    first = error.errors(include_url=False)[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, PlaceError):
        return PlaceError(cause.field, cause.reason)
    # The shape's union tag ("circle" / "polygon") is pydantic's, not part of the input.
    loc = [part for position, part in enumerate(first["loc"])
           if not (position == 1 and first["loc"][0] == "shape" and part in _SHAPE_TAGS)]
    path = ".".join(str(part) for part in loc) or "value"
    more = error.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return PlaceError(path, f"{first['msg']}{suffix}")

