"""The scenario worker: rounds of calendar triggers, due geofence dwells, triggers and
timers, each in its own transaction, off the event loop.

A round runs when something woke the worker (ingest stored presence, the API stored a
webhook: `wake()`, safe from any thread) or every `poll_interval_s` otherwise, which is
also how waits end: timers live in the database, not in this process. Timers and
geofence dwells are looked at once per `poll_interval_s`, not on every wake: under a
stream of presence a wake comes every few milliseconds, and those two checks would then
cost more than the triggers they delay nothing for.

The calendar rounds (every `schedule_interval_s`) also count the members of every
segment once a day (UTC), for the trend the API shows (`cloud.scenarios.membership`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from cloud.db import session_scope
from cloud.pacing import Every
from cloud.places.locations import due_geofence_dwells
from cloud.scenarios.catalog import Catalog
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.membership import record_daily_counts
from cloud.scenarios.run import EngineConfig, RunReport
from cloud.scenarios.schedule import record_calendar_triggers
from cloud.scenarios.timers import wake_due_journeys
from cloud.segments.crud import tenants_with_segments
from cloud.settings import ScenarioSettings

log = logging.getLogger(__name__)


class ScenarioWorker:
    def __init__(
        self,
        *,
        engine: Engine,
        config: EngineConfig,
        now: Callable[[], datetime],
        on_queued: Callable[[list[int]], None] | None = None,
    ) -> None:
        """`on_queued` is called after each committed batch that queued messages (with
        their ids) or webhooks to the shop: the delivery worker sends both."""
        self._engine = engine
        self._config = config
        self._now = now
        self._on_queued = on_queued
        self.catalog = Catalog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._calendar = Every(config.settings.schedule_interval_s)
        self._timers = Every(config.settings.poll_interval_s)
        self.totals = RunReport()

    @property
    def settings(self) -> ScenarioSettings:
        return self._config.settings

    def run_once(self, *, calendar: bool = True, timers: bool = True) -> RunReport:
        """One full round (with `timers`: due waits and geofence dwells too); returns what
        it did. Each batch reads the clock afresh (a round working through a backlog must
        not stamp its last batch with the time of its first) and hands what it queued to
        delivery as soon as it is committed."""
        report = RunReport()
        now = self._now()
        if calendar:
            self.record_calendar(now)
            self.record_segment_counts(now)
        if timers:
            with session_scope(self._engine) as session:
                due_geofence_dwells(session, now=now)
                session.commit()
        steps = (process_triggers, wake_due_journeys) if timers else (process_triggers,)
        for step in steps:
            while True:
                with session_scope(self._engine) as session:
                    batch = step(session, catalog=self.catalog, config=self._config,
                                 now=self._now(), limit=self.settings.trigger_batch)
                    session.commit()
                report.add(batch)
                self._hand_over(batch)
                # A batch short of the limit means nothing more was due (one of the two
                # counts is always zero: a batch either handles triggers or wakes timers).
                if batch.triggers + batch.woken < self.settings.trigger_batch:
                    break
        self.totals.add(report)
        return report

    def _hand_over(self, batch: RunReport) -> None:
        if (batch.queued or batch.webhooks) and self._on_queued is not None:
            self._on_queued(batch.queued)

    def record_calendar(self, now: datetime) -> int:
        """Birthday and inactivity triggers for every tenant with scenarios on them."""
        recorded = 0
        with session_scope(self._engine) as session:
            for tenant in self.catalog.all_tenants(session):
                recorded += record_calendar_triggers(
                    session, tenant=tenant, catalog=self.catalog.tenant(session, tenant),
                    settings=self.settings, now=now,
                )
            session.commit()
        return recorded

    def record_segment_counts(self, now: datetime) -> int:
        """Today's member count of every segment not counted yet today, a tenant per
        transaction (each tenant's customers are read once for all its segments)."""
        with session_scope(self._engine) as session:
            tenants = tenants_with_segments(session)
        recorded = 0
        for tenant in tenants:
            with session_scope(self._engine) as session:
                recorded += record_daily_counts(session, tenant=tenant, now=now)
                session.commit()
        return recorded

    def wake(self) -> None:
        """Run a round soon; callable from any thread."""
        if self._loop is not None and self._wakeup is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        while not stop.is_set():
            calendar, timers = self._calendar.due(), self._timers.due()
            self._wakeup.clear()  # before the round: a wake during it means "go again"
            try:
                await asyncio.to_thread(self.run_once, calendar=calendar, timers=timers)
            except Exception:  # the database may be away; the next round retries
                log.exception("scenario round failed")
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(
                self._wakeup.wait()
            )}
            _done, pending = await asyncio.wait(
                waiters, timeout=self.settings.poll_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in pending:
                task.cancel()
