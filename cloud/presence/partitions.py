"""Presence events on PostgreSQL, one partition per day of `last_seen`.

Why `last_seen`: every query that reads recent presence bounds it from below, or bounds
`first_seen` from below (and an event ends no earlier than it starts, so `last_seen`
gets the same bound, said beside it in the query): the planner then skips every older
day. Retention keeps events seen in the last `ingest.presence_retention_days` days, which
is whole partitions: dropping one is a catalog change, where deleting its rows would
write and vacuum all of them.

Idempotency does not rest on a global unique index (a partitioned table cannot have one
without the partition key). The unique key is (event_id, last_seen)
(`cloud.presence.models.EVENT_UNIQUE_KEY`): an event is immutable once the gateway made it,
so its redelivered copy carries the same `last_seen` and is routed to the same day's
partition as the first copy, whenever it arrives, where the key refuses it.

Partitions are made ahead (`ensure_partitions`) by the worker when it starts and at every
retention run, and by the migration. An event for a day with no partition (a gateway
clock days off, an event replayed from long ago) lands in the default partition rather
than being refused; the next upkeep moves such rows into their own day's new partition
(or deletes them once past retention), so the default partition stays near empty. It is
read by every query that has no upper bound on `last_seen` (the planner cannot rule it
out), which costs an index probe of a near-empty table. Workers of several hosts may run
the upkeep at once: a transaction-scoped advisory lock takes them in turn.

On SQLite (the embedded default) the table is a plain one: `drop_expired` deletes rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, delete, text

from cloud.presence.crud import EVENT_TABLE

PARENT = "presence_event"
#: Rows of days without a partition of their own wait here for the next upkeep.
DEFAULT = f"{PARENT}_default"
#: A partition's name: the parent's and its day, so an operator reads its range from it.
_NAME = re.compile(rf"^{PARENT}_p(\d{{8}})$")
#: An arbitrary constant key for `pg_advisory_xact_lock`: one upkeep at a time.
UPKEEP_LOCK_KEY = 7_301_926_001


@dataclass(frozen=True, slots=True)
class Upkeep:
    """What one upkeep run changed."""

    created: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    #: Rows deleted: where the table is not partitioned (SQLite), or expired rows that were
    #: waiting in the default partition.
    deleted_rows: int = 0


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def day_of(name: str) -> date | None:
    """The day a partition named by `partition_name` holds, or None for another table."""
    match = _NAME.match(name)
    return datetime.strptime(match.group(1), "%Y%m%d").date() if match else None


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def is_partitioned(connection: Connection) -> bool:
    if connection.dialect.name != "postgresql":
        return False
    found = connection.execute(text(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :parent AND c.relnamespace = current_schema()::regnamespace"
    ), {"parent": PARENT}).first()
    return found is not None


def partitions(connection: Connection) -> dict[date, str]:
    """The day partitions that exist now, by day."""
    names = connection.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent "
        "AND p.relnamespace = current_schema()::regnamespace"
    ), {"parent": PARENT}).scalars()
    found = {}
    for name in names:
        day = day_of(name)
        if day is not None:
            found[day] = name
    return found


def create_partition(connection: Connection, day: date) -> str:
    """Create the partition of `day` (UTC), taking over the rows of that day waiting in
    the default partition; returns its name.

    Made as a plain table and then attached: attaching takes a lighter lock on the parent
    than creating a partition in place (inserts go on), and the default partition must
    hold no row of the day when it is attached, so they are moved first."""
    name = partition_name(day)
    lower, upper = day_start(day), day_start(day + timedelta(days=1))
    bounds = {"lower": lower, "upper": upper}
    connection.execute(text(
        f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ))
    connection.execute(text(
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE last_seen >= :lower "
        f"AND last_seen < :upper RETURNING *) INSERT INTO {name} SELECT * FROM moved"
    ), bounds)
    connection.execute(text(
        f"ALTER TABLE {PARENT} ATTACH PARTITION {name} "
        f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
    ))
    return name


def ensure_partitions(
    connection: Connection, *, now: datetime, days_ahead: int, keep_days: int | None = None
) -> tuple[str, ...]:
    """Make sure every day from today to `days_ahead` days after has its partition, and
    so has every day (within `keep_days` of today, when given) with rows waiting in the
    default partition; returns the names created. A no-op where the table is not
    partitioned."""
    if not is_partitioned(connection):
        return ()
    _lock(connection)
    today = now.astimezone(UTC).date()
    last = today + timedelta(days=days_ahead)
    wanted = {today + timedelta(days=offset) for offset in range(days_ahead + 1)}
    waiting = connection.execute(text(
        f"SELECT DISTINCT (last_seen AT TIME ZONE 'UTC')::date FROM {DEFAULT}"
    )).scalars()
    first = today - timedelta(days=keep_days) if keep_days is not None else date.min
    wanted.update(day for day in waiting if first <= day <= last)
    existing = partitions(connection)
    return tuple(create_partition(connection, day) for day in sorted(wanted - set(existing)))


def make_days(connection: Connection, *, first: date, last: date) -> tuple[str, ...]:
    """Make sure every day from `first` to `last` has its partition (a bulk load of
    history, before it is loaded); returns the names created. A no-op where the table is
    not partitioned."""
    if not is_partitioned(connection):
        return ()
    _lock(connection)
    existing = partitions(connection)
    days = (first + timedelta(days=offset) for offset in range((last - first).days + 1))
    return tuple(create_partition(connection, day) for day in days if day not in existing)


def drop_expired(connection: Connection, *, now: datetime, keep_days: int) -> Upkeep:
    """Remove events last seen more than `keep_days` days before `now`: whole partitions
    whose every possible row is that old (their day ends at or before the cutoff), or on a
    table that is not partitioned, the rows."""
    cutoff = now - timedelta(days=keep_days)
    if not is_partitioned(connection):
        result = connection.execute(delete(EVENT_TABLE).where(EVENT_TABLE.c.last_seen < cutoff))
        return Upkeep(deleted_rows=result.rowcount)
    _lock(connection)
    dropped = []
    for day, name in sorted(partitions(connection).items()):
        if day_start(day + timedelta(days=1)) <= cutoff:
            connection.execute(text(f"DROP TABLE {name}"))
            dropped.append(name)
    waiting = connection.execute(
        text(f"DELETE FROM {DEFAULT} WHERE last_seen < :cutoff"), {"cutoff": cutoff}
    )
    return Upkeep(dropped=tuple(dropped), deleted_rows=waiting.rowcount)


def upkeep(
    connection: Connection, *, now: datetime, days_ahead: int, keep_days: int | None
) -> Upkeep:
    """One run: partitions made ahead, and (with `keep_days`) expired ones dropped."""
    created = ensure_partitions(connection, now=now, days_ahead=days_ahead, keep_days=keep_days)
    if keep_days is None:
        return Upkeep(created=created)
    expired = drop_expired(connection, now=now, keep_days=keep_days)
    return Upkeep(created=created, dropped=expired.dropped, deleted_rows=expired.deleted_rows)


def _lock(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPKEEP_LOCK_KEY})


def include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    """Alembic's filter: day partitions are made at run time, not described by the models
    (their parent is), so schema comparisons leave them out."""
    return not (type_ == "table" and (name == DEFAULT or (name and day_of(name))))
