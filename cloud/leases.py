"""Work queues on shared tables: rows taken under a lease, outcomes written only while
the lease holds, retries backed off.

The send queue (`cloud.messages.queue`), the webhook outbox (`cloud.webhooks.outbound`)
and the scenario triggers (`cloud.triggers`) are tables that any number of workers work
through at once. A worker takes rows in one statement that also marks them (`take`,
`claim_rows`): two workers never take the same row and neither waits for the other's
rows. A claim that moves `next_attempt_at` to the end of a lease commits before the work
is done, so a worker that dies leaves its rows to another once the lease ends; and an
outcome is written only if the claim still holds (`settle_claim`), so a worker whose
lease ran out cannot overwrite the outcome of the one that took over.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, select, update
from sqlalchemy.orm import Session

#: Durable retries back off exponentially from this...
BACKOFF_BASE = timedelta(seconds=30)
#: ...to at most this, so a long outage is probed every hour, not every few days.
BACKOFF_CAP = timedelta(hours=1)
#: Configuration errors (refused credentials, a channel not set up) need an operator:
#: retrying sooner than this only fills the attempt log.
CONFIGURATION_BACKOFF = timedelta(minutes=15)


def take(
    session: Session, table: Table, *, where: ColumnElement[bool],
    order_by: Sequence[ColumnElement[Any]], limit: int,
) -> ColumnElement[bool]:
    """`table.id IN` up to `limit` rows matching `where`, first by `order_by`, locked for
    the caller's transaction, skipping rows another transaction has locked (`SKIP
    LOCKED`, PostgreSQL): the WHERE of an UPDATE that takes work from a table workers
    share, so two never take the same row and neither waits for the other's rows.

    On PostgreSQL the rows are picked in a CTE: an IN subquery may run again for each row
    the UPDATE changes, and with SKIP LOCKED each run finds further rows, past the limit.
    On SQLite in a subquery: its driver opens a transaction only before a statement that
    starts with UPDATE, so one starting with WITH would commit at once, outside the
    caller's transaction."""
    picked = (select(table.c.id).where(where).order_by(*order_by).limit(limit)
              .with_for_update(skip_locked=True))
    if session.get_bind().dialect.name == "postgresql":
        return table.c.id.in_(select(picked.cte("taken").c.id))
    return table.c.id.in_(picked.scalar_subquery())


def take_oldest_due(
    session: Session, table: Table, due: ColumnElement[bool], limit: int
) -> ColumnElement[bool]:
    """Up to `limit` `due` rows, oldest `next_attempt_at` first (`take`)."""
    return take(session, table, where=due, order_by=[table.c.next_attempt_at, table.c.id],
                limit=limit)


def claim_rows(
    session: Session, *, table: Table, due: ColumnElement[bool], limit: int,
    values: Mapping[str, Any], returning: Sequence[ColumnElement[Any]],
) -> list[tuple[Any, ...]]:
    """Take up to `limit` `due` rows of a table worked through with leases (the send
    queue, the webhook outbox), oldest `next_attempt_at` first, setting `values`.

    One statement, `UPDATE ... WHERE id IN (the due rows, locked, SKIP LOCKED) ...
    RETURNING`, so two workers never take the same row and neither waits for the other's
    rows.
    """
    return [tuple(row) for row in session.connection().execute(
        update(table).where(take_oldest_due(session, table, due, limit), due)
        .values(**values).returning(*returning)
    )]


def settle_claim(
    session: Session, *, table: Table, row_id: int, held_status: str, attempt: int,
    values: Mapping[str, Any],
) -> bool:
    """Write an outcome if the claim still holds (the row is still `held_status` at this
    attempt); False if another worker took over after the lease ran out."""
    result = session.connection().execute(
        update(table)
        .where(table.c.id == row_id, table.c.status == held_status,
               table.c.attempts == attempt)
        .values(**values)
    )
    return result.rowcount == 1


def retry_at(
    *, attempt: int, now: datetime, retry_after_s: float | None, configuration: bool,
    rng: random.Random,
) -> datetime:
    """When to try again: exponential backoff with jitter (so workers that hit the same
    outage do not return in lockstep), never sooner than the provider's Retry-After."""
    doublings = min(max(attempt - 1, 0), 20)  # past 20 the cap has long been reached
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (1 << doublings))
    # "Equal jitter": at least half the backoff, so retries still spread out in time.
    delay = ceiling / 2 + ceiling / 2 * rng.random()
    if configuration:
        delay = max(delay, CONFIGURATION_BACKOFF)
    if retry_after_s is not None:
        delay = max(delay, timedelta(seconds=retry_after_s))
    return now + delay
