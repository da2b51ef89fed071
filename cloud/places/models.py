"""Stores, geofence definitions and who is inside them, as tables and API bodies.

- `store`: a shop of the tenant, with the IANA zone its opening hours are written in (the
  clock of the journeys its visits start, for customers who gave no zone) and its own
  quiet hours, if any (`cloud.preferences`); its key is the same string its gateways
  publish under (an MQTT topic segment).
- `geofence_definition`: a geofence as JSON (`cloud.places.parse`), normalised by parsing
  it back out (`geofence_to_dict`), so what is stored always parses. `version` is the
  tenant's geofence version at the row's last change.
- `geofence_version`: one counter per tenant, bumped by every geofence change (deletions
  included); a process compares it with the version of its in-memory index to know it
  must rebuild, with one primary-key read per request.
- `geofence_presence`: the tracker's state (`cloud.places.tracker.Stay`) per customer and
  geofence, so every API process and worker decides from the same stays. It is customer
  data: it goes with the customer (foreign key, cascade, and `erase_customer`).
- `recent_location_fix`: the latest fixes of customers who granted location-based
  marketing, a bounded few per tenant for a day (`cloud.places.recent`), so that the
  console's map can show where app users really are next to the geofences drawn for them.
  Customer data too: cascade, `erase_customer`, and forgotten when consent goes.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any

from pydantic import ConfigDict, StringConstraints
from pydantic import Field as FieldInfo
from sqlalchemy import JSON, CheckConstraint, Column, ForeignKey, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.bounds import DbDatetime
from cloud.db import UtcDateTime
from cloud.examples import CUSTOMER_ID, GEOFENCE, example
from cloud.places.validation import MAX_ACCURACY_M
from cloud.preferences.models import QuietChoice
from cloud.preferences.precedence import OwnRules, own_rules
from shared.presence import Transition

#: Store names show up in messages (`store.name` is a template field of up to 60
#: characters); printable text only.
StoreName = Annotated[
    str, StringConstraints(min_length=1, max_length=60, pattern=r"^[^\x00-\x1f\x7f]*$")
]


class StoreRow(SQLModel, table=True):
    __tablename__ = "store"
    __table_args__ = (
        UniqueConstraint("tenant", "key", name="uq_store_tenant_key"),
        CheckConstraint(
            "(quiet_start IS NULL) = (quiet_end IS NULL) "
            "AND NOT (quiet_off AND quiet_start IS NOT NULL)",
            name="ck_store_quiet_hours",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    key: str = Field(max_length=64)
    name: str = Field(max_length=60)
    time_zone: str = Field(max_length=64)
    #: The store's own quiet hours for the journeys its visits start (`quiet_columns`):
    #: both times, "off", or neither (the tenant's apply).
    quiet_start: time | None = None
    quiet_end: time | None = None
    quiet_off: bool = False
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)

    @property
    def rules(self) -> OwnRules:
        """The store's own quiet hours and zone, as the precedence reads them."""
        return own_rules(quiet_start=self.quiet_start, quiet_end=self.quiet_end,
                         quiet_off=self.quiet_off, time_zone=self.time_zone)


_STORE_ZONE = ("IANA time zone, e.g. Europe/Madrid: of the store's opening hours, and the "
               "clock of the journeys its visits start for customers who gave none")
_STORE_QUIET_HOURS = (
    "The store's own quiet hours, for the journeys its visits (presence, geofences) start: "
    'a window {"start": "HH:MM", "end": "HH:MM"}; "off" for none there; null for the '
    "tenant's")


class StoreCreate(SQLModel):
    """What an admin sends to define a store; the key is the one in the path. The whole
    store is replaced: `quiet_hours` left out is the tenant's."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=example(  # type: ignore[assignment]
        {"name": "Madrid Centro", "time_zone": "Europe/Madrid"},
        {"name": "Madrid Centro", "time_zone": "Europe/Madrid",
         "quiet_hours": {"start": "22:00", "end": "09:30"}},
    ))

    name: StoreName
    time_zone: str = Field(max_length=64, description=_STORE_ZONE)
    quiet_hours: QuietChoice = Field(default=None, description=_STORE_QUIET_HOURS)


class StorePublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"key": "madrid-centro", "name": "Madrid Centro", "time_zone": "Europe/Madrid",
         "quiet_hours": {"start": "22:00", "end": "09:30"},
         "geofences": ["madrid-centro-door"], "created_at": "2026-12-01T09:00:00Z",
         "updated_at": "2026-12-01T09:00:00Z"},
    ))

    key: str
    name: str
    time_zone: str
    quiet_hours: QuietChoice = Field(description=_STORE_QUIET_HOURS)
    geofences: list[str] = Field(description="ids of the geofences of this store")
    created_at: datetime
    updated_at: datetime


class GeofenceDefinition(SQLModel, table=True):
    __tablename__ = "geofence_definition"
    __table_args__ = (
        UniqueConstraint("tenant", "geofence_id", name="uq_geofence_definition_id"),
        Index("ix_geofence_definition_store", "tenant", "store"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    geofence_id: str = Field(max_length=128)
    store: str = Field(max_length=64)
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    version: int
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class GeofencePublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": "madrid-centro-door", "store": "madrid-centro", "definition": GEOFENCE,
         "version": 2, "created_at": "2026-12-01T09:05:00Z", "updated_at": "2026-12-01T09:05:00Z"},
    ))

    id: str
    store: str
    definition: dict[str, Any] = Field(description="the definition, as parse_geofence reads it")
    version: int
    created_at: datetime
    updated_at: datetime


class GeofenceList(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"version": 2,
         "geofences": [{"id": "madrid-centro-door", "store": "madrid-centro",
                        "definition": GEOFENCE, "version": 2,
                        "created_at": "2026-12-01T09:05:00Z",
                        "updated_at": "2026-12-01T09:05:00Z"}]},
    ))

    version: int = Field(description="the tenant's geofence version: bumped by every change")
    geofences: list[GeofencePublic]


class GeofenceVersion(SQLModel, table=True):
    __tablename__ = "geofence_version"

    tenant: str = Field(primary_key=True, max_length=64)
    version: int
    updated_at: datetime = Field(sa_type=UtcDateTime)


class GeofencePresence(SQLModel, table=True):
    __tablename__ = "geofence_presence"
    __table_args__ = (
        UniqueConstraint("customer_id", "geofence_id", name="uq_geofence_presence_stay"),
        Index("ix_geofence_presence_dwell", "dwell_emitted", "dwell_due_at"),
        Index("ix_geofence_presence_seen", "last_seen_at"),
        Index("ix_geofence_presence_geofence", "tenant", "geofence_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    customer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False)
    )
    geofence_id: str = Field(max_length=128)
    #: The store of the geofence when the stay began (its exit names the same store).
    store: str = Field(max_length=64)
    entered_at: datetime = Field(sa_type=UtcDateTime)
    #: The customer's latest report (the same on every row of the customer: the tracker's
    #: silence rule and out-of-order check are per customer).
    last_seen_at: datetime = Field(sa_type=UtcDateTime)
    #: entered_at + the geofence's dwell threshold: lets the worker find due dwells with
    #: an index (kept up to date when the threshold changes).
    dwell_due_at: datetime = Field(sa_type=UtcDateTime)
    dwell_emitted: bool = False


class RecentFix(SQLModel, table=True):
    """One fix a consenting customer's app reported, kept for the map (see
    `cloud.places.recent`)."""

    __tablename__ = "recent_location_fix"
    __table_args__ = (
        Index("ix_recent_location_fix_tenant_at", "tenant", "at"),
        Index("ix_recent_location_fix_received", "received_at"),
        Index("ix_recent_location_fix_customer", "customer_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    customer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False)
    )
    lat: float
    lon: float
    accuracy_m: float
    #: When the phone took the fix (its clock).
    at: datetime = Field(sa_type=UtcDateTime)
    #: When the API received it (ours): retention counts from the earlier of the two, so a
    #: phone whose clock runs ahead cannot keep a fix longer.
    received_at: datetime = Field(sa_type=UtcDateTime)


class RecentFixPublic(SQLModel):
    customer_id: str = Field(description="the customer's public id; nothing else about them")
    lat: float
    lon: float
    accuracy_m: float
    at: datetime = Field(description="when the phone took the fix")


class RecentFixes(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"fixes": [{"customer_id": CUSTOMER_ID, "lat": 40.4168, "lon": -3.7038,
                    "accuracy_m": 25.0, "at": "2026-12-07T10:14:00Z"}],
         "since": "2026-12-07T09:14:00Z", "limit": 500},
    ))

    fixes: list[RecentFixPublic] = Field(description="newest first")
    since: datetime = Field(description="fixes older than this are no longer kept")
    limit: int = Field(description="at most this many fixes are kept per tenant")


class LocationFix(SQLModel):
    """One location fix from the app: the disc of `accuracy_m` metres around the point."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=example(  # type: ignore[assignment]
        {"lat": 40.4168, "lon": -3.7038, "accuracy_m": 25.0, "at": "2026-12-07T10:14:00Z"},
    ))

    lat: Annotated[float, FieldInfo(ge=-90.0, le=90.0, allow_inf_nan=False)]
    lon: Annotated[float, FieldInfo(ge=-180.0, le=180.0, allow_inf_nan=False)]
    accuracy_m: Annotated[float, FieldInfo(ge=0.0, le=MAX_ACCURACY_M, allow_inf_nan=False)]
    at: DbDatetime | None = Field(
        default=None, description="when the phone took the fix (aware); defaults to now"
    )


class StayPublic(SQLModel):
    geofence: str
    store: str
    entered_at: datetime
    dwelt: bool


class TransitionPublic(SQLModel):
    geofence: str
    store: str
    kind: Transition
    at: datetime
    entered_at: datetime
    trigger_id: int | None = Field(description="the scenario trigger recorded, None if replayed")


class LocationOutcome(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"customer_id": CUSTOMER_ID, "geofence_version": 2,
         "inside": [{"geofence": "madrid-centro-door", "store": "madrid-centro",
                     "entered_at": "2026-12-07T10:14:00Z", "dwelt": False}],
         "transitions": [{"geofence": "madrid-centro-door", "store": "madrid-centro",
                          "kind": "enter", "at": "2026-12-07T10:14:00Z",
                          "entered_at": "2026-12-07T10:14:00Z", "trigger_id": 7001}],
         "ignored": 0},
    ))

    customer_id: str = Field(description="the customer's public id")
    geofence_version: int
    inside: list[StayPublic]
    transitions: list[TransitionPublic]
    ignored: int = Field(description="fixes older than the customer's latest, not used")
