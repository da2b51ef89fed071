"""Stored presence: events as gateways reported them, messages that could not be read,
the last health report of every gateway and, downsampled, the reports before it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import ConfigDict
from sqlalchemy import JSON, BigInteger, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.db import UtcDateTime
from cloud.examples import example
from shared.identifiers import IdentifierKind
from shared.presence import PseudonymScope, Transition

#: BIGINT on PostgreSQL (billions of events); INTEGER on SQLite, where only an
#: INTEGER PRIMARY KEY is the auto-incrementing rowid.
EventRowId = BigInteger().with_variant(Integer(), "sqlite")


#: The unique key that makes a redelivered event harmless: the event id with the
#: partition key. On PostgreSQL `presence_event` is partitioned by day of `last_seen`
#: (`cloud.presence.partitions`), and a partitioned table can only hold a unique key that
#: includes the partition key; `last_seen` travels in the same immutable event as its id,
#: so a redelivery (or a republication from a gateway's outbox) carries both unchanged and
#: meets its first copy in the same partition, whatever day it arrives. The same key on
#: SQLite, so the same insert works on both.
EVENT_UNIQUE_KEY = ("event_id", "last_seen")
EVENT_UNIQUE_NAME = "uq_presence_event_event_id_last_seen"


class PresenceEventRow(SQLModel, table=True):
    """One presence transition. `event_id` is the gateway's deterministic id: unique with
    its `last_seen` (`EVENT_UNIQUE_KEY`: equivalent, since an event's `last_seen` never
    changes), so a redelivered or republished message adds nothing.

    On PostgreSQL the migrations make this a table partitioned by day of `last_seen`, with
    the primary key (id, last_seen); the model keeps `id` alone as its key, which SQLite
    needs for an auto-incrementing rowid and which is unique there too (one sequence)."""

    __tablename__ = "presence_event"
    __table_args__ = (
        UniqueConstraint(*EVENT_UNIQUE_KEY, name=EVENT_UNIQUE_NAME),
        Index("ix_presence_event_store_time", "tenant", "store", "first_seen"),
        Index("ix_presence_event_pseudonym", "tenant", "pseudonym", "first_seen"),
        # Who is here now and who came in lately (cloud.presence.live): the recent events
        # of a tenant, however long the table.
        Index("ix_presence_event_tenant_last_seen", "tenant", "last_seen"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=EventRowId)
    event_id: str = Field(max_length=32)
    tenant: str = Field(max_length=64)
    store: str = Field(max_length=64)
    gateway: str = Field(max_length=64)
    zone: str = Field(max_length=64)
    pseudonym: str = Field(max_length=64)
    key_id: str = Field(max_length=16)
    scope: PseudonymScope = Field(sa_type=String(8))
    kind: IdentifierKind = Field(sa_type=String(24))
    randomized: bool
    transition: Transition = Field(sa_type=String(8))
    rssi: float
    first_seen: datetime = Field(sa_type=UtcDateTime)
    last_seen: datetime = Field(sa_type=UtcDateTime)
    dwell_s: float
    sightings: int
    received_at: datetime = Field(sa_type=UtcDateTime)


class PresenceEventPublic(SQLModel):
    event_id: str
    store: str
    gateway: str
    zone: str
    transition: Transition
    first_seen: datetime
    last_seen: datetime
    dwell_s: float


class DeadLetter(SQLModel, table=True):
    """A message the worker could not use, kept (truncated) for an operator to inspect."""

    __tablename__ = "dead_letter"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(sa_type=UtcDateTime, index=True)
    topic: str = Field(max_length=512)
    reason: str = Field(sa_type=Text)
    payload: bytes = Field(sa_type=LargeBinary)
    payload_size: int
    truncated: bool


class DeadLetterPublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": 77, "received_at": "2026-12-07T07:59:00Z",
         "topic": "vitrina/v1/acme/madrid-centro/gw-entrance/presence",
         "reason": "unknown schema major version 3", "payload_size": 412, "truncated": False},
    ))

    id: int
    received_at: datetime
    topic: str
    reason: str
    payload_size: int
    truncated: bool


class GatewayHealth(SQLModel, table=True):
    """The newest status report per gateway (retained heartbeat or last will)."""

    __tablename__ = "gateway"

    tenant: str = Field(max_length=64, primary_key=True)
    store: str = Field(max_length=64, primary_key=True)
    gateway: str = Field(max_length=64, primary_key=True)
    online: bool
    status_sent_at: datetime = Field(sa_type=UtcDateTime)
    received_at: datetime = Field(sa_type=UtcDateTime)
    software_version: str = Field(default="", max_length=64)
    uptime_s: float = 0
    queue_depth: int = 0
    published: int = 0
    dropped: int = 0
    rejected_frames: int = 0
    devices_tracked: int = 0
    active_key_id: str | None = Field(default=None, max_length=16)
    sources: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    #: The cloud config version in force on the gateway, and the last one it refused.
    config_version: int | None = None
    config_refused_version: int | None = None
    config_refused_reason: str | None = Field(default=None, max_length=500)
    #: The pseudonymization key ids the gateway holds (None: it does not say).
    key_ids: list[str] | None = Field(default=None, sa_type=JSON)
    #: The device's figures (status 1.1; None from older gateways or where it cannot tell).
    cpu_percent: float | None = None
    memory_bytes: int | None = Field(default=None, sa_type=BigInteger)
    temperature_c: float | None = None
    disk_free_bytes: int | None = Field(default=None, sa_type=BigInteger)


#: Heartbeats are kept one per gateway and this many seconds (the last of each slot):
#: a gateway heartbeating every 30 s keeps one in ten.
HEALTH_SLOT_S = 300


class GatewayHealthSample(SQLModel, table=True):
    """A gateway's health over time: the last online heartbeat of each `HEALTH_SLOT_S`
    slot (by the gateway's clock), with the largest outbox depth the slot saw. Rows older
    than `gateways.health_history_days` are deleted by the worker's retention run, so a
    gateway holds at most 288 rows a day."""

    __tablename__ = "gateway_health_history"

    tenant: str = Field(max_length=64, primary_key=True)
    store: str = Field(max_length=64, primary_key=True)
    gateway: str = Field(max_length=64, primary_key=True)
    #: The start of the slot.
    slot: datetime = Field(sa_type=UtcDateTime, primary_key=True)
    sent_at: datetime = Field(sa_type=UtcDateTime)
    software_version: str = Field(default="", max_length=64)
    uptime_s: float = 0
    queue_depth: int = 0
    queue_depth_max: int = 0
    published: int = 0
    dropped: int = 0
    rejected_frames: int = 0
    devices_tracked: int = 0
    config_version: int | None = None
    cpu_percent: float | None = None
    memory_bytes: int | None = Field(default=None, sa_type=BigInteger)
    temperature_c: float | None = None
    disk_free_bytes: int | None = Field(default=None, sa_type=BigInteger)
    #: Per source: alive, frames, errors, restarts (counters since the agent started).
    sources: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class GatewayHealthPublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"tenant": "acme", "store": "madrid-centro", "gateway": "gw-entrance", "online": True,
         "status_sent_at": "2026-12-07T10:00:00Z", "received_at": "2026-12-07T10:00:01Z",
         "software_version": "0.1.0", "uptime_s": 86400.0, "queue_depth": 0, "published": 15230,
         "dropped": 0, "rejected_frames": 3, "devices_tracked": 41, "active_key_id": "k1",
         "sources": {"ble": {"alive": True}}, "config_version": 4, "cpu_percent": 12.5,
         "memory_bytes": 73400320, "temperature_c": 48.2, "disk_free_bytes": 10737418240},
    ))

    tenant: str
    store: str
    gateway: str
    online: bool
    status_sent_at: datetime
    received_at: datetime
    software_version: str
    uptime_s: float
    queue_depth: int
    published: int
    dropped: int
    rejected_frames: int
    devices_tracked: int
    active_key_id: str | None
    sources: dict[str, Any]
    config_version: int | None = None
    config_refused_version: int | None = None
    config_refused_reason: str | None = None
    key_ids: list[str] | None = None
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    temperature_c: float | None = None
    disk_free_bytes: int | None = None


#: The zone of a roll-up row that counts the whole store (a zone name is never empty).
WHOLE_STORE = ""


class FootfallCounts(SQLModel):
    """What a footfall chart needs of a period, in figures that add up exactly across
    periods: `devices` counts visits (a device back twice is counted twice), so a day is
    the sum of its hours and a quarter the sum of its days."""

    #: Visits (passers-by and visitors) that started in the period.
    devices: int = 0
    visitors: int = 0
    passers_by: int = 0
    new_visitors: int = 0
    repeat_visitors: int = 0
    #: Visitors under a daily pseudonym: whether they came before cannot be told.
    unknown_visitors: int = 0
    #: Visitors per dwell bucket (`cloud.presence.analytics.DWELL_BUCKETS`, in order).
    dwell_under_1m: int = 0
    dwell_1_5m: int = 0
    dwell_5_15m: int = 0
    dwell_15_30m: int = 0
    dwell_30_60m: int = 0
    dwell_over_60m: int = 0


class FootfallHour(FootfallCounts, table=True):
    """Footfall of the visits that started in one hour (UTC), of a store as a whole
    (`zone` = `WHOLE_STORE`) or of one zone; kept by `cloud.presence.rollups`."""

    __tablename__ = "footfall_hour"

    tenant: str = Field(max_length=64, primary_key=True)
    store: str = Field(max_length=64, primary_key=True)
    zone: str = Field(max_length=64, primary_key=True)
    hour: datetime = Field(sa_type=UtcDateTime, primary_key=True)


class FootfallDay(FootfallCounts, table=True):
    """The same per UTC day, with the day's median dwell: a median does not add up from
    hours, so the day is kept whole (its rows are rebuilt with its hours)."""

    __tablename__ = "footfall_day"

    tenant: str = Field(max_length=64, primary_key=True)
    store: str = Field(max_length=64, primary_key=True)
    zone: str = Field(max_length=64, primary_key=True)
    day: date = Field(primary_key=True)
    #: Of visitors (not passers-by), in seconds rounded to the millisecond.
    median_dwell_s: float | None = None


class FootfallDirtyHour(SQLModel, table=True):
    """An hour of a store whose roll-ups may no longer match the stored events (an event
    was stored or rewritten that a visit of this hour may include): the roll-up worker
    rebuilds it and deletes the mark in one transaction."""

    __tablename__ = "footfall_dirty_hour"
    __table_args__ = (UniqueConstraint("tenant", "store", "hour"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    store: str = Field(max_length=64)
    hour: datetime = Field(sa_type=UtcDateTime)
    #: The first time the hour was marked since it was last rebuilt: how far behind the
    #: roll-ups run.
    marked_at: datetime = Field(sa_type=UtcDateTime, index=True)


class FootfallHourPublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"store": "madrid-centro", "zone": None, "hour": "2026-12-06T17:00:00Z", "devices": 210,
         "visitors": 74, "passers_by": 136, "capture_rate": 0.352},
    ))

    store: str
    #: None: the store as a whole.
    zone: str | None
    hour: datetime
    devices: int
    visitors: int
    passers_by: int
    capture_rate: float | None


class OccupancyMinute(SQLModel, table=True):
    """One gateway's people estimate for one zone and minute, as it reported it (an
    aggregate: no pseudonym, no address). Each report also has a row for the gateway as a
    whole (`zone` = `WHOLE_STORE`, the sum of its zones), so a minute in which it heard
    nobody is a row of zeros rather than a gap. A report sent again overwrites its rows."""

    __tablename__ = "occupancy_minute"
    __table_args__ = (
        Index("ix_occupancy_minute_tenant_minute", "tenant", "minute"),
    )

    tenant: str = Field(max_length=64, primary_key=True)
    store: str = Field(max_length=64, primary_key=True)
    gateway: str = Field(max_length=64, primary_key=True)
    zone: str = Field(max_length=64, primary_key=True)
    minute: datetime = Field(sa_type=UtcDateTime, primary_key=True)
    people: float
    addresses: int
    frames: int
    scans: int
    method: str = Field(max_length=32)
    received_at: datetime = Field(sa_type=UtcDateTime)
