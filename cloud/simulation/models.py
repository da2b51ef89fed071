"""Dry runs as jobs: asked for through the API, run by a scenario worker, read back with
their progress and, once done, their report."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Index, String
from sqlmodel import Field, SQLModel

from cloud.bounds import DbDatetime
from cloud.db import UtcDateTime
from cloud.examples import SCENARIO, example
from cloud.scenarios.spec import ScenarioSpec
from cloud.simulation.report import SimulationReport

#: The longest history a dry run may cover: what the orchestrator keeps of presence
#: triggers is more, but a quarter is what a shop decides a campaign on.
MAX_DAYS = 90
#: Journeys a report shows step by step, at most.
MAX_SAMPLE = 200


class SimulationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Simulation(SQLModel, table=True):
    __tablename__ = "simulation"
    __table_args__ = (
        Index("ix_simulation_status", "status", "id"),
        Index("ix_simulation_scenario", "tenant", "scenario_key", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    scenario_key: str = Field(max_length=64)
    #: The stored version run; None for a draft sent with the request.
    scenario_version: int | None = None
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    since: datetime = Field(sa_type=UtcDateTime)
    until: datetime = Field(sa_type=UtcDateTime)
    sample: int = 20
    status: SimulationStatus = Field(sa_type=String(16))
    #: Share of the period's triggers replayed, 0 to 1.
    progress: float = 0.0
    triggers_done: int = 0
    triggers_total: int | None = None
    requested_by: str = Field(max_length=254)
    created_at: datetime = Field(sa_type=UtcDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: Last sign of life of the worker running it: a job whose worker went quiet is
    #: taken over (`cloud.simulation.jobs.STALE_AFTER`).
    heartbeat_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    report: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    error: str | None = Field(default=None, max_length=500)


class SimulationRequest(BaseModel):
    """POST /tenants/{tenant}/scenarios/{key}/simulations."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=example(
        {"days": 30, "sample": 20},
    ))

    days: int = PydanticField(default=30, ge=1, le=MAX_DAYS,
                              description="how many days of history, up to `until`")
    until: DbDatetime | None = PydanticField(
        default=None, description="the end of the period (not in the future); now by default")
    spec: ScenarioSpec | None = PydanticField(
        default=None, description="a draft to run instead of the stored scenario (a change "
        "to try before saving it); checked as a save would check it")
    sample: int = PydanticField(default=20, ge=0, le=MAX_SAMPLE,
                                description="how many journeys the report shows step by step")


class SimulationPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"id": 7, "scenario_key": "store-cross-sell", "scenario_version": 3,
         "since": "2026-11-07T10:00:00Z", "until": "2026-12-07T10:00:00Z",
         "status": "running", "progress": 0.42, "triggers_done": 50_400,
         "triggers_total": 120_000, "requested_by": "marketing@shop.example",
         "created_at": "2026-12-07T10:00:00Z", "started_at": "2026-12-07T10:00:01Z",
         "finished_at": None, "report": None, "error": None, "spec": SCENARIO},
    ))

    id: int
    scenario_key: str
    scenario_version: int | None = PydanticField(
        description="the stored version run; null for a draft")
    since: datetime
    until: datetime
    status: SimulationStatus
    progress: float
    triggers_done: int
    triggers_total: int | None
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    report: SimulationReport | None = PydanticField(
        description="once done: what the scenario would have done; nothing was sent")
    error: str | None
    spec: dict[str, Any]
