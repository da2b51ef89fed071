"""Who is in a segment: counted over all of a tenant's customers, or decided for some.

Customers are taken in batches of `COUNT_BATCH` (in id order) and their facts loaded with
the scenario engine's loader (`cloud.scenarios.facts`), only the kinds the conditions
read: a handful of queries per batch, none per customer, and every condition counted in
the same pass. That reads about 8,000 customers a second on the 2-core development
machine (docs/benchmarks.md): a small tenant at once, 100,000 customers in about 12
seconds, too much for every request of a chart. So the trend is a daily count the
scenario worker stores (`record_daily_counts`, on its first calendar round of each UTC
day), and only "how many now" is counted on demand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, select
from sqlmodel import Session, SQLModel

from cloud.customers.models import Customer
from cloud.scenarios.conditions import (
    Condition,
    SegmentBook,
    SegmentCondition,
    evaluate,
    facts_read,
)
from cloud.scenarios.facts import CustomerRow, load_facts
from cloud.scenarios.segments import build_book
from cloud.segments.crud import (
    claim_counting,
    list_segments,
    record_count,
    uncounted_segments,
)

log = logging.getLogger(__name__)

#: Customers whose facts are loaded at once: the scenario engine's batch size.
COUNT_BATCH = 500
CUSTOMER_TABLE: Table = SQLModel.metadata.tables[Customer.__tablename__]


@dataclass(frozen=True, slots=True)
class Counts:
    #: Members of each condition counted, by the name the caller gave it.
    members: Mapping[str, int]
    #: Customers looked at.
    customers: int


def count_members(
    session: Session, *, tenant: str, conditions: Mapping[str, Condition],
    segments: SegmentBook, now: datetime, batch: int = COUNT_BATCH,
) -> Counts:
    """How many of the tenant's customers meet each of `conditions` at `now` (segments
    as `segments` defines them), in one pass over the customers."""
    kinds = frozenset().union(*(facts_read(one, segments) for one in conditions.values()))
    members = dict.fromkeys(conditions, 0)
    customers = 0
    for rows in _customer_batches(session, tenant=tenant, batch=batch):
        facts = load_facts(session, customer_ids=[row.id for row in rows if row.id], now=now,
                           kinds=kinds, customers=rows)
        customers += len(facts)
        for one in facts.values():
            for name, condition in conditions.items():
                members[name] += evaluate(condition, one, {}, now, segments)
    return Counts(members=members, customers=customers)


def members_among(
    session: Session, *, customer_ids: Iterable[int], condition: Condition,
    segments: SegmentBook, now: datetime, batch: int = COUNT_BATCH,
) -> set[int]:
    """Those of `customer_ids` who meet `condition` at `now`."""
    ids = sorted(set(customer_ids))
    kinds = facts_read(condition, segments)
    found: set[int] = set()
    for start in range(0, len(ids), batch):
        facts = load_facts(session, customer_ids=ids[start:start + batch], now=now, kinds=kinds)
        found.update(cid for cid, one in facts.items()
                     if evaluate(condition, one, {}, now, segments))
    return found


def _customer_batches(session: Session, *, tenant: str, batch: int
                      ) -> Iterator[Sequence[CustomerRow]]:
    """The tenant's customers, `batch` at a time, by id (each batch one indexed query),
    as rows of columns: building ORM objects for a whole tenant would cost more than the
    queries (and pile up in the session)."""
    after = 0
    while True:
        rows: Sequence[CustomerRow] = session.connection().execute(
            select(CUSTOMER_TABLE).where(CUSTOMER_TABLE.c.tenant == tenant,
                                         CUSTOMER_TABLE.c.id > after)
            .order_by(CUSTOMER_TABLE.c.id).limit(batch)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id
        assert last is not None
        after = last
        if len(rows) < batch:
            return


def record_daily_counts(session: Session, *, tenant: str, now: datetime) -> int:
    """Count the tenant's segments that have no count for today (UTC) yet, all in one
    pass, and store the counts; how many were stored. Two workers do not count the same
    tenant at once: the second skips it (`claim_counting`), and finds it counted later."""
    day = now.date()
    if not claim_counting(session, tenant=tenant):
        return 0
    due = uncounted_segments(session, tenant=tenant, day=day)
    if not due:
        return 0
    book = build_book(list_segments(session, tenant=tenant))
    wanted = {row.key: SegmentCondition(segment=row.key) for row in due if row.key in book}
    counts = count_members(session, tenant=tenant, conditions=wanted, segments=book, now=now)
    stored = sum(
        record_count(session, tenant=tenant, key=key, day=day, version=book[key].version,
                     members=members, customers=counts.customers, now=now)
        for key, members in counts.members.items()
    )
    log.info("counted %d segments of tenant %s over %d customers", stored, tenant,
             counts.customers)
    return stored

