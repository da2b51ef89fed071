"""The segment tables.

A segment's row holds its current definition and version; every version ever saved is
also kept in `segment_version` (the current one included), so a report can name the
definition that decided a journey long after the segment changed. A segment is never
deleted, only archived: its versions stay readable, and saving it again brings it back
as a new version.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import StringConstraints
from sqlalchemy import JSON, Date, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.db import UtcDateTime

#: A segment's key, as scenarios, offers and paths name it: a scenario key's alphabet.
SEGMENT_KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
SegmentKey = Annotated[str, StringConstraints(pattern=SEGMENT_KEY_PATTERN)]

#: Segment names and descriptions are for people reading the console.
SEGMENT_NAME_MAX = 200
SEGMENT_DESCRIPTION_MAX = 1000


class Segment(SQLModel, table=True):
    __tablename__ = "segment"
    __table_args__ = (
        UniqueConstraint("tenant", "key", name="uq_segment_key"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    key: str = Field(max_length=64)
    name: str = Field(max_length=SEGMENT_NAME_MAX)
    description: str = Field(default="", max_length=SEGMENT_DESCRIPTION_MAX)
    #: Every save and every archiving adds one: the scenario catalog's fingerprint sums
    #: versions, and a sum that only grows cannot come back to an earlier value.
    version: int = 1
    #: The condition, as the API took it (`cloud.scenarios.conditions.Condition`).
    conditions: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    archived: bool = False
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class SegmentVersion(SQLModel, table=True):
    """One saved definition of a segment, kept after the segment changes."""

    __tablename__ = "segment_version"

    tenant: str = Field(max_length=64, primary_key=True)
    key: str = Field(max_length=64, primary_key=True)
    version: int = Field(primary_key=True)
    name: str = Field(max_length=SEGMENT_NAME_MAX)
    description: str = Field(default="", max_length=SEGMENT_DESCRIPTION_MAX)
    conditions: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    saved_at: datetime = Field(sa_type=UtcDateTime)


class SegmentCount(SQLModel, table=True):
    """How many customers were in a segment on a day (UTC), counted once that day by
    the scenario worker: the trend `GET .../segments/{key}/count` shows."""

    __tablename__ = "segment_count"

    tenant: str = Field(max_length=64, primary_key=True)
    key: str = Field(max_length=64, primary_key=True)
    day: date = Field(sa_type=Date, primary_key=True)
    #: The version counted: a jump in the trend may be the definition's, not the shop's.
    version: int
    members: int
    #: Customers of the tenant at the time (members are a share of them).
    customers: int
    counted_at: datetime = Field(sa_type=UtcDateTime)
