"""What one attempt at a batch of scenario work shares, and how it is written.

A batch (a tenant's share of claimed triggers, or a set of due timers) is decided in
memory against state loaded once (`BatchFacts`, `Lookups`) and written in a few
statements when it succeeds: new messages with their batch (`MessageBatch`), the journeys
it changed since inserting them, and its journal of step outcomes. `attempt` runs a batch
in a savepoint; a failed one leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session, SQLModel

from cloud.bulk import insert_rows, update_rows
from cloud.messages.queue import MessageBatch, PendingMessage
from cloud.scenarios.catalog import LoadedScenario
from cloud.scenarios.conditions import CustomerFacts, FactKind
from cloud.scenarios.facts import load_facts
from cloud.scenarios.lookups import Lookups
from cloud.scenarios.models import Journey, JourneyLog
from cloud.scenarios.sending import Links, cap_window, store_key
from cloud.settings import ScenarioSettings

log = logging.getLogger(__name__)

JOURNEY_TABLE: Table = SQLModel.metadata.tables[Journey.__tablename__]
JOURNEY_LOG_TABLE: Table = SQLModel.metadata.tables[JourneyLog.__tablename__]
#: What a journey's row holds when written in bulk: every column but the id.
_JOURNEY_COLUMNS = tuple(column.name for column in JOURNEY_TABLE.c if column.name != "id")


class DecisionClock(StrEnum):
    """When the decisions of a batch are made."""

    #: All at the time the batch began: a live worker handles triggers within a second or
    #: so of their recording, and one clock reading per batch is what "now" means then.
    BATCH = "batch"
    #: Each trigger at the moment it was recorded, each due wait at its due time: a dry
    #: run (`cloud.simulation`) handles a recorded hour in one batch, and must decide as
    #: the live worker did, within a second of each event.
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    settings: ScenarioSettings
    links: Links
    clock: DecisionClock = DecisionClock.BATCH


@dataclass(slots=True)
class RunReport:
    """What one round did; `queued` lists the messages it put in the send queue,
    `webhooks` counts the webhooks it put in the outbox (`cloud.webhooks.outbound`)."""

    triggers: int = 0
    started: int = 0
    held_out: int = 0
    resumed: int = 0
    exited: int = 0
    woken: int = 0
    failed: int = 0
    queued: list[int] = field(default_factory=list)
    webhooks: int = 0

    def add(self, other: RunReport) -> None:
        for name in ("triggers", "started", "held_out", "resumed", "exited", "woken", "failed",
                     "webhooks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.queued.extend(other.queued)


class BatchFacts:
    """Customer facts for one batch, reloaded for a customer after a step changed them."""

    def __init__(
        self, session: Session, now: datetime, kinds: frozenset[FactKind], lookups: Lookups
    ) -> None:
        """`kinds`: the parts the batch's scenarios read (`TenantCatalog.facts`); the
        customer rows come from (and stay in) the batch's `lookups`."""
        self._session, self._now, self._kinds, self._lookups = session, now, kinds, lookups
        self._facts: dict[int, CustomerFacts] = {}

    def preload(self, customer_ids: Iterable[int]) -> None:
        missing = {cid for cid in customer_ids if cid not in self._facts}
        if missing:
            customers = list(self._lookups.customers(missing).values())
            self._facts.update(load_facts(self._session, customer_ids=missing, now=self._now,
                                          kinds=self._kinds, customers=customers))

    def get(self, customer_id: int) -> CustomerFacts | None:
        self.preload([customer_id])
        return self._facts.get(customer_id)

    def forget(self, customer_id: int) -> None:
        self._facts.pop(customer_id, None)


@dataclass(slots=True)
class Run:
    """What one attempt at a batch shares. Its journal of step outcomes is written in
    one statement when the attempt succeeds (`write_journal`), not a row at a time, and
    is simply dropped with the attempt when it fails."""

    session: Session
    config: EngineConfig
    #: When the decision being made is made: the batch's time (`started`), or with the
    #: `EVENT` clock the moment of the trigger or wait at hand (`decide_at`).
    now: datetime
    report: RunReport
    facts: BatchFacts
    lookups: Lookups
    started: datetime
    journal: list[tuple[Journey, str, str, str | None, datetime]] = field(default_factory=list)
    messages: MessageBatch = field(default_factory=MessageBatch)
    #: Messages queued but not written yet: their journey and their line in the journal.
    queued: list[tuple[PendingMessage, Journey, int]] = field(default_factory=list)
    #: Journeys this run inserted, with the row as inserted. They stay out of the ORM
    #: session: what the batch changes in them afterwards (most finish at once, right
    #: after their first send) is written in one statement, not an UPDATE each.
    inserted: list[tuple[Journey, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def begin(
        cls, session: Session, config: EngineConfig, now: datetime, facts: frozenset[FactKind]
    ) -> Run:
        lookups = Lookups(session, now=now)
        return cls(session=session, config=config, now=now, report=RunReport(),
                   facts=BatchFacts(session, now, facts, lookups), lookups=lookups,
                   started=now)

    def decide_at(self, moment: datetime) -> None:
        """Make the next decisions at `moment` (never before the batch began) with the
        `EVENT` clock; with the `BATCH` clock every decision keeps the batch's time."""
        if self.config.clock is DecisionClock.EVENT:
            self.now = max(self.started, moment)

    def facts_of(self, customer_id: int) -> CustomerFacts | None:
        """The customer's facts, with the messages queued for them written first (a
        condition may ask about them)."""
        if self.messages.holds_for(customer_id):
            self.write_messages()
        return self.facts.get(customer_id)

    def queue(self, message: PendingMessage, journey: Journey) -> None:
        """A message a step of `journey` queued, logged as its journal's last line."""
        self.queued.append((message, journey, len(self.journal) - 1))

    def write_messages(self) -> None:
        """Insert the queued messages; each stored one joins its journey's context and
        the report, a refused one (its key taken before) turns its line into a
        duplicate."""
        self.messages.write(self.session)
        for message, journey, line in self.queued:
            if message.id is None:
                logged, step, _outcome, _detail, at = self.journal[line]
                self.journal[line] = (logged, step, "duplicate", message.idempotency_key, at)
                continue
            self.report.queued.append(message.id)
            journey.context = {**journey.context,
                               "messages": [*journey.context.get("messages", []), message.id]}
        self.queued.clear()

    def prepare_sends(self, journeys: Iterable[tuple[Journey, LoadedScenario]]) -> None:
        """Load what send steps read for these journeys' customers, in one go."""
        chosen = list(journeys)
        caps = [cap for _journey, loaded in chosen for cap in loaded.spec.caps]
        self.lookups.preload((journey.customer_id for journey, _loaded in chosen),
                             sends_within=cap_window(self.config.settings, caps))
        self.lookups.preload_stores(
            (journey.tenant, key) for journey, _loaded in chosen
            if (key := store_key(journey)) is not None
        )
        self.lookups.preload_tenant_rules({journey.tenant for journey, _loaded in chosen})
        self.lookups.preload_bought(
            journey.customer_id for journey, loaded in chosen if loaded.spec.has_offers()
        )

    def log(self, journey: Journey, step: str, outcome: str, detail: str | None) -> None:
        journey.updated_at = self.now
        self.journal.append((journey, step, outcome, (detail or None) and detail[:500],
                             self.now))

    def write_journeys(self) -> None:
        """Write the inserted journeys the batch changed since."""
        changed = [
            {"id": journey.id, **row} for journey, written in self.inserted
            if (row := journey_row(journey)) != written
        ]
        self.inserted.clear()
        update_rows(self.session.connection(), JOURNEY_TABLE, changed, key="id")

    def write_journal(self) -> None:
        """Write the journal; lines of journeys never inserted (refused starts) are left out."""
        rows = [
            {"journey_id": journey.id, "customer_id": journey.customer_id, "step": step,
             "at": at, "outcome": outcome, "detail": detail}
            for journey, step, outcome, detail, at in self.journal if journey.id is not None
        ]
        self.journal.clear()
        insert_rows(self.session.connection(), JOURNEY_LOG_TABLE, rows)


def attempt(
    session: Session, config: EngineConfig, now: datetime, report: RunReport,
    work: Callable[[Run], None], *, facts: frozenset[FactKind],
) -> bool:
    """Run `work` (reading the `facts` kinds of customer facts) in a savepoint; on success
    add what it did to `report`. On failure everything it wrote is rolled back and its
    report dropped."""
    run = Run.begin(session, config, now, facts)
    try:
        with session.begin_nested():
            work(run)
            run.write_messages()
            run.write_journeys()
            run.write_journal()
    except Exception:
        log.exception("scenario work failed; rolled back")
        return False
    report.add(run.report)
    return True


def journey_row(journey: Journey) -> dict[str, Any]:
    return {name: getattr(journey, name) for name in _JOURNEY_COLUMNS}
