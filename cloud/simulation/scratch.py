"""The scratch database a dry run writes to: an in-memory SQLite database holding one
tenant's state as it was when the simulated period began, and the rows recorded during
the period, held back until the virtual clock reaches them.

The engine reads facts with no notion of "as of": a purchase in the table is a purchase.
So nothing from the period may be in the scratch database before its time: each copied
table names the column that places a row in time (`Source.moment`), and a row of the
period is inserted only when the clock passes it (`Timeline`). What has no history is
copied as it is now: customers' profiles, tags, devices' active flags, offers and their
stock, stores and templates; the reference (docs/scenarios.md) says so.

The live database is only read, in one transaction; the scratch database is dropped with
its engine when the run ends, and no delivery worker ever looks at it.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload

from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    MetaData,
    Select,
    Table,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, SQLModel

from cloud.commerce.loyalty import LoyaltyEntry
from cloud.commerce.models import Order, OrderLine, OrderRefund
from cloud.customers.models import ConsentEntry, Customer, Device
from cloud.messages.models import Message
from cloud.offers.models import ComplementRule, Coupon, Offer
from cloud.places.models import StoreRow
from cloud.preferences.models import TenantPreferences
from cloud.scenarios.models import CustomerTag, Journey
from cloud.segments.models import Segment, SegmentVersion
from cloud.templates.crud import MessageTemplate
from cloud.triggers import Trigger, TriggerKind

#: Triggers the calendar makes (birthdays, lapses): the simulation makes them again on
#: its own clock for the simulated scenario, as a live worker with it would have.
CALENDAR_KINDS = frozenset({TriggerKind.DATE.value, TriggerKind.INACTIVITY.value})
#: Rows read from the live database per round trip while copying.
COPY_CHUNK = 20_000


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


CUSTOMER = _table(Customer)
TRIGGER = _table(Trigger)
MESSAGE = _table(Message)
JOURNEY = _table(Journey)
COUPON = _table(Coupon)
LOYALTY = _table(LoyaltyEntry)


@dataclass(frozen=True, slots=True)
class Source:
    """A table copied into the scratch database (the tenant's rows, `_scope`); `moment`:
    the column that says when the orchestrator learnt of a row, None for tables copied
    whole as they are now."""

    table: Table
    moment: str | None = None


#: What the engine reads, and when each row came to be.
SOURCES: tuple[Source, ...] = (
    Source(CUSTOMER, moment="created_at"),
    Source(_table(ConsentEntry), moment="recorded_at"),
    Source(_table(Device), moment="registered_at"),
    Source(_table(CustomerTag), moment="added_at"),
    # An order as it stands now (cancelled, refunded) from when it was recorded: its
    # later changes have no history of their own.
    Source(_table(Order), moment="recorded_at"),
    Source(_table(OrderRefund), moment="recorded_at"),
    Source(_table(OrderLine), moment="ordered_at"),
    Source(_table(StoreRow)),
    Source(_table(TenantPreferences)),
    Source(_table(MessageTemplate)),
    Source(_table(Offer)),
    Source(_table(ComplementRule)),
)


def scratch_engine() -> Engine:
    """An empty in-memory database with the orchestrator's schema. One connection shared
    by every session (`StaticPool`): an in-memory SQLite database lives as long as its
    connection. Foreign keys are not enforced: copied rows may point at rows a dry run
    has no use for (a message's journey of another scenario).

    Every table numbers its rows with AUTOINCREMENT here, so that `reserve_ids` can start
    the dry run's own rows above every live id: rows of the period arrive later with
    their own ids, which a row the dry run made must not have taken."""
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _pragmas)
    _scratch_schema().create_all(engine)
    return engine


@functools.cache
def _scratch_schema() -> MetaData:
    """Every table the models imported by now define (the engine's own imports bring in
    all it reads and writes), numbered with AUTOINCREMENT."""
    schema = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        copy = table.to_metadata(schema)
        if _numbered(copy):
            copy.dialect_options["sqlite"]["autoincrement"] = True
    return schema


def _numbered(table: Table) -> bool:
    return "id" in table.c and table.c.id.primary_key


def reserve_ids(live: Session, scratch: Engine) -> None:
    """Make the rows the dry run inserts take ids above any the live database has used."""
    with scratch.begin() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if not _numbered(table):
                continue
            highest = live.execute(select(func.max(table.c.id))).scalar() or 0
            copied = connection.execute(select(func.max(table.c.id))).scalar() or 0
            connection.execute(text("DELETE FROM sqlite_sequence WHERE name = :name"),
                               {"name": table.name})
            connection.execute(
                text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :seq)"),
                {"name": table.name, "seq": max(int(highest), int(copied))},
            )


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


@dataclass(order=True, slots=True)
class Pending:
    """A row of the period, inserted when the clock reaches `at`."""

    at: datetime
    order: int
    table: Table = field(compare=False)
    row: dict[str, Any] = field(compare=False)


class Timeline:
    """Rows of the simulated period in the order they came to be, handed over as the
    virtual clock passes them."""

    def __init__(self) -> None:
        self._rows: list[Pending] = []
        self._sorted = True
        self._next = 0

    def add(self, at: datetime, table: Table, row: dict[str, Any]) -> None:
        self._rows.append(Pending(at, len(self._rows), table, row))
        self._sorted = False

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def handed_over(self) -> int:
        return self._next

    def upcoming(self) -> Upcoming:
        """The rows not handed over yet, in order (`take` hands them over)."""
        if not self._sorted:
            self._rows.sort()
            self._sorted = True
        return Upcoming(self._rows, self._next)

    def next_moment(self) -> datetime | None:
        upcoming = self.upcoming()
        return upcoming[0].at if upcoming else None

    def take(self, count: int) -> list[Pending]:
        """Hand over the next `count` rows."""
        self.upcoming()
        taken = self._rows[self._next:self._next + count]
        self._next += len(taken)
        return taken

    def until(self, moment: datetime) -> list[Pending]:
        """Hand over the rows that came to be at or before `moment`."""
        self.upcoming()
        end = bisect.bisect_right(self._rows, moment, lo=self._next, key=lambda row: row.at)
        return self.take(end - self._next)


class Upcoming(Sequence[Pending]):
    """A timeline's rows from its next one on, without copying them."""

    def __init__(self, rows: list[Pending], start: int) -> None:
        self._rows, self._start = rows, start

    def __len__(self) -> int:
        return len(self._rows) - self._start

    @overload
    def __getitem__(self, index: int) -> Pending: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Pending]: ...

    def __getitem__(self, index: int | slice) -> Pending | Sequence[Pending]:
        if isinstance(index, slice):
            raise TypeError("read an upcoming row at a time")
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._rows[self._start + index]


def customer_of(pending: Pending) -> int | None:
    """The customer a row is about (None: no one's, or everyone's)."""
    if pending.table is CUSTOMER:
        return int(pending.row["id"])
    customer = pending.row.get("customer_id")
    return None if customer is None else int(customer)


def _insert_now(scratch: Engine, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that belong in the scratch database from the start."""
    if rows:
        with scratch.begin() as connection:
            _insert_rows(connection, table, rows)


@dataclass(frozen=True, slots=True)
class _Copying:
    """How whole rows of a table go into the scratch database in bulk: one statement
    compiled once, each value converted by its column type's own bind processor, and
    handed to the driver's executemany. What a month of a large shop copies is hundreds
    of thousands of rows; through a Core INSERT each would cost some 50 µs of work done
    again for every row. A row the dry run already made is skipped: a tag its scenario
    added that the live one also added, later, in the recorded period."""

    sql: str
    columns: tuple[str, ...]
    convert: tuple[Callable[[Any], Any] | None, ...]

    def insert(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert `rows`, each holding every column of the table."""
        if not rows:
            return
        columns, convert = self.columns, self.convert
        values = [
            tuple(value if to is None else to(value)
                  for value, to in zip((row[name] for name in columns), convert, strict=True))
            for row in rows
        ]
        connection.exec_driver_sql(self.sql, values)


#: The scratch database's dialect (`scratch_engine`), for the types' bind processors.
SCRATCH_DIALECT: Dialect = sqlite.dialect()


@functools.cache
def _copying(table: Table) -> _Copying:
    dialect = SCRATCH_DIALECT
    names = tuple(column.name for column in table.columns)
    quoted = ", ".join(f'"{name}"' for name in names)
    return _Copying(
        sql=f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join("?" * len(names))}) '
            "ON CONFLICT DO NOTHING",
        columns=names,
        convert=tuple(column.type.bind_processor(dialect) for column in table.columns),
    )


def _insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
                 ) -> None:
    _copying(table).insert(connection, rows)


def write(engine: Engine, pending: Sequence[Pending]) -> None:
    """Insert rows handed over by the timeline, grouped by table, in their order."""
    if not pending:
        return
    with engine.begin() as connection:
        start = 0
        while start < len(pending):
            table = pending[start].table
            end = start
            while end < len(pending) and pending[end].table is table:
                end += 1
            _insert_rows(connection, table, [item.row for item in pending[start:end]])
            start = end


@dataclass(slots=True)
class CopyPlan:
    """What a dry run copies: the tenant, the period, the simulated scenario and which
    trigger kinds it reacts to (the others are copied already handled: facts such as the
    last visit still read them)."""

    tenant: str
    since: datetime
    until: datetime
    scenario_key: str
    reacting_kinds: frozenset[str]
    #: Kinds of the other triggers the engine reads as facts (the last visit, activity
    #: for lapses): the rest of the period's triggers are of no use to the dry run.
    fact_kinds: frozenset[str]
    #: The trigger kinds a journey of the scenario starts on; None when the calendar
    #: starts them (birthdays, lapses: any customer may enter).
    entry_kinds: frozenset[str] | None = None


def copy_segments(live: Session, scratch: Engine, tenant: str) -> None:
    """The tenant's segments as they are now (every version): a scenario's conditions
    may name them, and the catalog reads them with the scenario."""
    for table in (_table(Segment), _table(SegmentVersion)):
        _insert_now(scratch, table, [dict(row) for row in live.execute(
            select(table).where(table.c.tenant == tenant)).mappings()])


@dataclass(frozen=True, slots=True)
class Timelines:
    """The period's rows: `events`, the triggers the simulated scenario reacts to (each
    may begin a round of the worker); `facts`, everything else (inserted as the clock
    passes it)."""

    facts: Timeline
    events: Timeline


def copy_state(live: Session, scratch: Engine, plan: CopyPlan) -> Timelines:
    """Copy the tenant's state at `plan.since` into `scratch`, and return the rows of the
    period. Reads the live database in the caller's transaction."""
    timelines = Timelines(facts=Timeline(), events=Timeline())
    timeline = timelines.facts
    for source in SOURCES:
        _copy(live, scratch, timeline, source.table, _scope(source.table, plan), plan,
              moment=source.moment)
    _copy_messages(live, scratch, timeline, plan)
    _copy_credit(live, scratch, timeline, plan)
    _copy_coupons(live, scratch, timeline, plan)
    _copy_earlier_journeys(live, scratch, plan)
    _copy_triggers(live, scratch, timelines, plan)
    reserve_ids(live, scratch)
    return timelines


def _candidates(plan: CopyPlan) -> Select[tuple[int]]:
    """The customers a journey of the scenario can start for: with an event entry, those
    with a trigger of its kinds recorded in the period; every customer of the tenant when
    the calendar starts journeys. Nothing the engine decides for one customer reads
    another's rows (an offer's stock is the offer row's counter), so the others' rows
    are left behind: a month of a large shop copies the few who came by, not everyone."""
    if plan.entry_kinds is None:
        return select(CUSTOMER.c.id).where(CUSTOMER.c.tenant == plan.tenant)
    return select(TRIGGER.c.customer_id).where(
        TRIGGER.c.tenant == plan.tenant, TRIGGER.c.kind.in_(sorted(plan.entry_kinds)),
        TRIGGER.c.recorded_at >= plan.since, TRIGGER.c.recorded_at < plan.until,
        TRIGGER.c.customer_id.is_not(None),
    ).distinct()


def _scope(table: Table, plan: CopyPlan) -> ColumnElement[bool]:
    """The rows of `table` a dry run of `plan` copies: the tenant's, and of a table about
    customers only the candidates' (`_candidates`)."""
    candidates = _candidates(plan)
    if table is CUSTOMER:
        return (CUSTOMER.c.tenant == plan.tenant) & CUSTOMER.c.id.in_(candidates)
    about_customers = table.c.customer_id.in_(candidates) if "customer_id" in table.c else None
    if "tenant" not in table.c:
        assert about_customers is not None, f"{table.name} has neither tenant nor customer"
        return about_customers
    by_tenant = table.c.tenant == plan.tenant
    return by_tenant if about_customers is None else by_tenant & about_customers


def _copy(
    live: Session, scratch: Engine, timeline: Timeline, table: Table,
    scope: ColumnElement[bool], plan: CopyPlan, *, moment: str | None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    adjust: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    route: Callable[[dict[str, Any]], Timeline] | None = None,
) -> None:
    """Rows of `table` in `scope`: those before the period (or all, without a `moment`)
    straight into `scratch`, those of the period onto the timeline, later ones dropped."""
    query = select(table).where(scope)
    if moment is not None:
        query = query.where(table.c[moment] < plan.until)
    result = live.connection().execution_options(yield_per=COPY_CHUNK).execute(query)
    names = tuple(result.keys())
    with scratch.begin() as connection:
        for chunk in result.partitions():
            now_rows: list[dict[str, Any]] = []
            for values in chunk:
                row = dict(zip(names, values, strict=True))
                if keep is not None and not keep(row):
                    continue
                if adjust is not None:
                    row = adjust(row)
                at = row[moment] if moment is not None else None
                if at is None or at < plan.since:
                    now_rows.append(row)
                else:
                    (route(row) if route is not None else timeline).add(at, table, row)
            _insert_rows(connection, table, now_rows)


def _copy_messages(live: Session, scratch: Engine, timeline: Timeline, plan: CopyPlan) -> None:
    """Every message as it was queued (caps and message conditions count them), except the
    simulated scenario's own during the period: the dry run queues its own instead."""
    def keep(row: Mapping[str, Any]) -> bool:
        return bool(row["scenario"] != plan.scenario_key or row["created_at"] < plan.since)

    def detach(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "journey_id": None}

    _copy(live, scratch, timeline, MESSAGE, _scope(MESSAGE, plan), plan,
          moment="created_at", keep=keep, adjust=detach)


def _copy_credit(live: Session, scratch: Engine, timeline: Timeline, plan: CopyPlan) -> None:
    """Loyalty credit, except what the simulated scenario granted during the period and
    its reversals (the dry run grants its own, and reverses them as orders are
    cancelled)."""
    own = set(live.execute(select(LOYALTY.c.id).where(
        LOYALTY.c.tenant == plan.tenant, LOYALTY.c.created_at >= plan.since,
        LOYALTY.c.reason.startswith(f"scenario {plan.scenario_key} step "),
    )).scalars())

    def keep(row: Mapping[str, Any]) -> bool:
        return row["id"] not in own and row["reverses_id"] not in own

    _copy(live, scratch, timeline, LOYALTY, _scope(LOYALTY, plan), plan,
          moment="created_at", keep=keep)


def _copy_coupons(live: Session, scratch: Engine, timeline: Timeline, plan: CopyPlan) -> None:
    """Coupons issued before the period, and those other scenarios issued during it (an
    offer's stock and a customer's open coupons are what offers are chosen against)."""
    own = {
        f"j{journey_id}:" for journey_id in live.execute(
            select(JOURNEY.c.id).where(JOURNEY.c.tenant == plan.tenant,
                                       JOURNEY.c.scenario_key == plan.scenario_key,
                                       JOURNEY.c.started_at >= plan.since)
        ).scalars()
    }

    def keep(row: Mapping[str, Any]) -> bool:
        key = str(row["idempotency_key"] or "")
        return not (row["issued_at"] >= plan.since and key[:key.find(":") + 1] in own)


    _copy(live, scratch, timeline, COUPON, _scope(COUPON, plan), plan,
          moment="issued_at", keep=keep)


#: The reason given to journeys of the simulated scenario that began before the period:
#: they count for re-entry and cooldowns, and take no part otherwise.
EARLIER = "before_simulation"


def _copy_earlier_journeys(live: Session, scratch: Engine, plan: CopyPlan) -> None:
    rows = [
        {**row, "status": "exited" if row["status"] in ("running", "waiting") else row["status"],
         "reason": EARLIER, "wake_at": None, "waiting_for": None}
        for row in live.execute(select(JOURNEY).where(
            _scope(JOURNEY, plan), JOURNEY.c.scenario_key == plan.scenario_key,
            JOURNEY.c.started_at < plan.since,
        )).mappings()
    ]
    _insert_now(scratch, JOURNEY, rows)


def _copy_triggers(
    live: Session, scratch: Engine, timelines: Timelines, plan: CopyPlan
) -> None:
    """The period's triggers, at the moment the orchestrator recorded them (when a live
    worker would have handled them), with their own ids (handled in the same order).
    Those the simulated scenario does not react to arrive already handled; so do the
    triggers about the simulated scenario's own messages (opened, clicked: the dry run's
    messages are never opened, what they would earn comes from observed rates). Triggers
    of other kinds than `plan.fact_kinds` are left out altogether. Before
    the period, only each customer's latest activity of each kind is copied: all that
    facts (the last visit) and lapses read of it."""
    def reacts(row: Mapping[str, Any]) -> bool:
        attributes = row.get("attributes") or {}
        return (row["kind"] in plan.reacting_kinds
                and attributes.get("scenario") != plan.scenario_key)

    def keep(row: Mapping[str, Any]) -> bool:
        return reacts(row) or row["kind"] in plan.fact_kinds

    def adjust(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "processed_at": None if reacts(row) else row["recorded_at"]}

    def route(row: dict[str, Any]) -> Timeline:
        return timelines.events if row["processed_at"] is None else timelines.facts

    wanted = (plan.reacting_kinds | plan.fact_kinds) - CALENDAR_KINDS
    _copy(live, scratch, timelines.facts, TRIGGER,
          _scope(TRIGGER, plan) & (TRIGGER.c.recorded_at >= plan.since)
          & TRIGGER.c.kind.in_(sorted(wanted)),
          plan, moment="recorded_at", keep=keep, adjust=adjust, route=route)
    latest = live.execute(
        select(TRIGGER.c.customer_id, TRIGGER.c.kind, func.max(TRIGGER.c.occurred_at))
        .where(_scope(TRIGGER, plan), TRIGGER.c.recorded_at < plan.since,
               TRIGGER.c.kind.in_(sorted(plan.fact_kinds)))
        .group_by(TRIGGER.c.customer_id, TRIGGER.c.kind)
    ).all()
    # Negative ids: the period's triggers keep their own, which these must not take.
    rows = [
        {"id": -number, "tenant": plan.tenant, "customer_id": customer_id, "kind": kind,
         "occurred_at": moment, "recorded_at": moment, "processed_at": moment,
         "source_key": f"history:{kind}:{customer_id}", "attributes": {}}
        for number, (customer_id, kind, moment) in enumerate(latest, start=1)
    ]
    _insert_now(scratch, TRIGGER, rows)
