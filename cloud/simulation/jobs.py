"""Dry runs as jobs: queued by the API, taken by one scenario worker (SKIP LOCKED), run off
the event loop against a scratch database, their progress and report written back to the
live one. A job whose worker went quiet (stopped mid-run) is taken over and run again
from the start: a dry run writes nothing live until its report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, Table, or_, update
from sqlmodel import Session, SQLModel, col, select

from cloud.db import session_scope
from cloud.leases import take
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.spec import ScenarioSpec
from cloud.simulation.dry_run import simulate
from cloud.simulation.models import Simulation, SimulationStatus
from cloud.simulation.replay import Period

log = logging.getLogger(__name__)

SIMULATION_TABLE: Table = SQLModel.metadata.tables[Simulation.__tablename__]
#: A running job whose worker has not reported for this long is taken over: progress is
#: written every second or so, so a minute of silence is a worker that is gone.
STALE_AFTER = timedelta(minutes=1)
#: Progress is written at most this often (each write is a small transaction).
PROGRESS_EVERY = timedelta(seconds=1)


def queue_simulation(
    session: Session, *, tenant: str, spec: ScenarioSpec, version: int | None,
    period: Period, sample: int, requested_by: str, now: datetime,
) -> Simulation:
    row = Simulation(
        tenant=tenant, scenario_key=spec.key, scenario_version=version,
        spec=spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        since=period.since, until=period.until, sample=sample,
        status=SimulationStatus.QUEUED, requested_by=requested_by[:254], created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def claim_simulation(session: Session, *, now: datetime) -> Simulation | None:
    """Take the oldest queued job (or one whose worker went quiet), marked running."""
    due = or_(
        SIMULATION_TABLE.c.status == SimulationStatus.QUEUED.value,
        (SIMULATION_TABLE.c.status == SimulationStatus.RUNNING.value)
        & (SIMULATION_TABLE.c.heartbeat_at < now - STALE_AFTER),
    )
    taken = session.connection().execute(
        update(SIMULATION_TABLE)
        .where(take(session, SIMULATION_TABLE, where=due, order_by=[SIMULATION_TABLE.c.id],
                    limit=1), due)
        .values(status=SimulationStatus.RUNNING.value, started_at=now, heartbeat_at=now,
                progress=0.0, triggers_done=0)
        .returning(SIMULATION_TABLE.c.id)
    ).scalar()
    return None if taken is None else session.get(Simulation, taken)


def run_simulation(
    engine: Engine, *, simulation_id: int, config: EngineConfig, now: Callable[[], datetime]
) -> SimulationStatus:
    """Run a claimed job to its end; its report (or the error) is written back."""
    with session_scope(engine) as session:
        job = session.get(Simulation, simulation_id)
        assert job is not None
        spec = ScenarioSpec.model_validate(job.spec)
        period, tenant, sample = Period(job.since, job.until), job.tenant, job.sample
    written = now()

    def progress(done: int, total: int) -> None:
        nonlocal written
        if now() - written < PROGRESS_EVERY and done < total:
            return
        written = now()
        _write(engine, simulation_id, progress=done / total if total else 1.0,
               triggers_done=done, triggers_total=total, heartbeat_at=written)

    try:
        with session_scope(engine) as live:
            report = simulate(live, tenant=tenant, spec=spec, period=period, config=config,
                              sample_size=sample, seed=simulation_id, progress=progress)
            live.rollback()
    except Exception as error:  # a bad job must not stop the worker: say what went wrong
        log.exception("dry run %s failed", simulation_id)
        _write(engine, simulation_id, status=SimulationStatus.FAILED.value,
               error=f"{type(error).__name__}: {error}"[:500], finished_at=now())
        return SimulationStatus.FAILED
    _write(engine, simulation_id, status=SimulationStatus.DONE.value, progress=1.0,
           report=report.model_dump(mode="json"), finished_at=now())
    return SimulationStatus.DONE


def _write(engine: Engine, simulation_id: int, **values: object) -> None:
    with session_scope(engine) as session:
        session.connection().execute(
            update(SIMULATION_TABLE).where(SIMULATION_TABLE.c.id == simulation_id)
            .values(**values)
        )
        session.commit()


def list_simulations(session: Session, *, tenant: str, key: str, limit: int = 20
                     ) -> list[Simulation]:
    return list(session.exec(
        select(Simulation).where(Simulation.tenant == tenant, Simulation.scenario_key == key)
        .order_by(col(Simulation.id).desc()).limit(limit)
    ).all())


class SimulationRunner:
    """The loop a scenario worker runs beside its rounds: one dry run at a time, in a
    thread (a month of a large shop is most of a minute of work)."""

    def __init__(self, *, engine: Engine, config: EngineConfig, now: Callable[[], datetime],
                 poll_interval_s: float) -> None:
        self._engine, self._config, self._now = engine, config, now
        self._poll_interval_s = poll_interval_s

    def run_next(self) -> SimulationStatus | None:
        """Claim and run the next job, if any; its final status."""
        with session_scope(self._engine) as session:
            job = claim_simulation(session, now=self._now())
            session.commit()
        if job is None or job.id is None:
            return None
        return run_simulation(self._engine, simulation_id=job.id, config=self._config,
                              now=self._now)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                ran = await asyncio.to_thread(self.run_next)
            except Exception:  # the database may be away; the next look retries
                log.exception("looking for dry runs failed")
                ran = None
            if ran is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._poll_interval_s)
