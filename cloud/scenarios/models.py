"""Stored scenarios, the journeys customers take through them, and what steps leave behind
(tags, a log of every step's outcome; loyalty credit is kept in `cloud.commerce.loyalty`,
next to the orders that earn it).

A journey is one customer's pass through one scenario. Its `entry_key` is unique, so a
replayed trigger cannot start it twice; its `wake_at` is the durable timer of a wait,
picked up by whichever worker claims it first (SKIP LOCKED on PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from cloud.db import UtcDateTime


class Scenario(SQLModel, table=True):
    __tablename__ = "scenario"
    __table_args__ = (
        UniqueConstraint("tenant", "key", name="uq_scenario_key"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64, index=True)
    key: str = Field(max_length=64)
    version: int = 1
    active: bool = True
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class ScenarioPublic(SQLModel):
    id: int
    key: str
    version: int
    active: bool
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class JourneyStatus(StrEnum):
    #: Steps to run now (just started, or woken).
    RUNNING = "running"
    #: Sleeping until `wake_at`, or until an awaited event.
    WAITING = "waiting"
    DONE = "done"
    #: Ended early: an exit event, the scenario switched off, a step that no longer exists.
    EXITED = "exited"
    #: In the holdout group: recorded so conversions can be compared, nothing runs.
    HELD_OUT = "held_out"


#: Journeys still in progress.
OPEN_STATUSES = (JourneyStatus.RUNNING.value, JourneyStatus.WAITING.value)


class Journey(SQLModel, table=True):
    __tablename__ = "journey"
    __table_args__ = (
        Index("ix_journey_due", "status", "wake_at"),
        Index("ix_journey_customer", "customer_id", "status"),
        Index(
            "ix_journey_scenario_customer", "tenant", "scenario_key", "customer_id", "started_at"
        ),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    scenario_key: str = Field(max_length=64)
    scenario_version: int
    customer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False)
    )
    #: Unique: "<scenario>:<customer>" for once-only scenarios, else per trigger.
    entry_key: str = Field(max_length=255, unique=True)
    entry_kind: str = Field(max_length=32)
    variant: str | None = Field(default=None, max_length=64)
    holdout: bool = False
    status: JourneyStatus = Field(sa_type=String(16))
    step: str | None = Field(default=None, max_length=64)
    wake_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    waiting_for: str | None = Field(default=None, max_length=32)
    started_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    reason: str | None = Field(default=None, max_length=64)
    #: What steps share: the trigger's attributes, the chosen offer, coupon, product.
    context: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class JourneyPublic(SQLModel):
    id: int
    scenario_key: str
    scenario_version: int
    customer_id: str = Field(description="the customer's public id")
    entry_kind: str
    variant: str | None
    holdout: bool
    status: JourneyStatus
    step: str | None
    wake_at: datetime | None
    waiting_for: str | None
    started_at: datetime
    finished_at: datetime | None
    reason: str | None


class JourneyLog(SQLModel, table=True):
    """What each step did, including what it decided not to do and why."""

    __tablename__ = "journey_log"
    __table_args__ = (Index("ix_journey_log_journey", "journey_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(
        sa_column=Column(Integer, ForeignKey("journey.id", ondelete="CASCADE"), nullable=False)
    )
    customer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False)
    )
    step: str = Field(max_length=64)
    at: datetime = Field(sa_type=UtcDateTime)
    outcome: str = Field(max_length=32)
    detail: str | None = Field(default=None, max_length=500)


class JourneyLogPublic(SQLModel):
    step: str
    at: datetime
    outcome: str = Field(description="what the step did, as a code: queued, held, capped, "
                         "no_consent, held_out...")
    detail: str | None
    reason: str | None = Field(
        default=None, description="for a step that held or did not send: why, as a "
        "sentence (`cloud.scenarios.reasons`)")


class CustomerTag(SQLModel, table=True):
    """Segments and list memberships: what scenarios tag, conditions test."""

    __tablename__ = "customer_tag"

    customer_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True
        )
    )
    tag: str = Field(max_length=64, primary_key=True)
    added_at: datetime = Field(sa_type=UtcDateTime)
