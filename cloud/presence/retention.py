"""Keeping presence only as long as the privacy rules allow.

A stable pseudonym identifies a device across days. That is allowed only for a customer
who consented to location marketing; for everyone else (non-customers, customers who
said no or withdrew) a stable pseudonym may live at most a day. After that the events
keep counting (footfall, dwell) under a replacement that is random per device and day,
so two days of the same device can no longer be told to be the same device, and nothing
(not even the tenant key) leads back to it: the randomness is thrown away.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Table, update
from sqlmodel import Session, SQLModel, col, select

from cloud.channels import LOCATION_MARKETING
from cloud.customers.models import ConsentEntry, IdentityLink
from cloud.presence.models import PresenceEventRow
from cloud.presence.rollups import EventSpan, mark_events
from shared.presence import PseudonymScope

#: The design's limit: nothing identifies a non-consenting device for longer than a day.
STABLE_RETENTION = timedelta(days=1)
#: Rows rewritten per statement batch: bounded memory and short locks on a big table.
CHUNK_ROWS = 5000

EVENT_TABLE: Table = SQLModel.metadata.tables[PresenceEventRow.__tablename__]


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    tenant: str
    store: str
    pseudonym: str
    key_id: str
    first_seen: datetime
    last_seen: datetime

    @property
    def day(self) -> date:
        return self.first_seen.date()


def consenting_pseudonyms(session: Session, *, tenant: str) -> set[str]:
    """Pseudonyms linked to customers whose current location-marketing answer is yes."""
    entries = session.exec(
        select(ConsentEntry)
        .where(col(ConsentEntry.channel) == LOCATION_MARKETING)
        .order_by(col(ConsentEntry.given_at), col(ConsentEntry.id))
    ).all()
    latest: dict[int, bool] = {}
    for entry in entries:
        latest[entry.customer_id] = entry.granted
    consenting = [customer for customer, granted in latest.items() if granted]
    if not consenting:
        return set()
    links = session.exec(
        select(IdentityLink.pseudonym).where(
            IdentityLink.tenant == tenant, col(IdentityLink.customer_id).in_(consenting)
        )
    ).all()
    return set(links)


def replace_pseudonyms(session: Session, rows: Iterable[_Row], *, now: datetime) -> int:
    """Give each (tenant, pseudonym, day) a fresh random pseudonym; return rows rewritten.

    The footfall roll-ups of the hours this changes are marked for rebuilding: a visit
    that spanned midnight is two visits now, and a device's later visits may no longer
    be repeats."""
    rows = list(rows)
    mark_events(session, now=now, spans=[
        EventSpan(tenant=row.tenant, store=row.store, pseudonym=row.pseudonym, stable=True,
                  first_seen=row.first_seen, last_seen=row.last_seen)
        for row in rows
    ])
    replacement: dict[tuple[str, str, date], str] = {}
    by_new: dict[str, list[_Row]] = {}
    for row in rows:
        key = (row.tenant, row.pseudonym, row.day)
        if key not in replacement:
            replacement[key] = f"{row.key_id}:{secrets.token_hex(16)}"
        by_new.setdefault(replacement[key], []).append(row)
    for new, group in by_new.items():
        session.connection().execute(
            update(EVENT_TABLE).where(
                EVENT_TABLE.c.id.in_([row.id for row in group]),
                # The rows' own span of `last_seen`: on PostgreSQL the update then visits
                # only the day partitions that hold them (`cloud.presence.partitions`).
                EVENT_TABLE.c.last_seen.between(min(row.last_seen for row in group),
                                                max(row.last_seen for row in group)),
            ).values(pseudonym=new, scope=PseudonymScope.DAILY.value)
        )
    return sum(len(group) for group in by_new.values())


def _rows(session: Session, query: object) -> list[_Row]:
    result = session.exec(query)  # type: ignore[call-overload]
    return [
        _Row(row.id, row.tenant, row.store, row.pseudonym, row.key_id, row.first_seen,
             row.last_seen)
        for row in result
    ]


def purge_unconsented(
    session: Session, *, now: datetime, tenants: Collection[str] | None = None
) -> int:
    """Rewrite stable pseudonyms older than a day that no consenting customer owns."""
    cutoff = now - STABLE_RETENTION
    tenant_query = select(PresenceEventRow.tenant).distinct().where(
        col(PresenceEventRow.scope) == PseudonymScope.STABLE.value,
        col(PresenceEventRow.last_seen) < cutoff,
    )
    found = set(session.exec(tenant_query).all())
    rewritten = 0
    for tenant in sorted(found if tenants is None else found & set(tenants)):
        keep = consenting_pseudonyms(session, tenant=tenant)
        after_id = 0
        while True:
            query = (
                select(PresenceEventRow)
                .where(
                    col(PresenceEventRow.tenant) == tenant,
                    col(PresenceEventRow.scope) == PseudonymScope.STABLE.value,
                    col(PresenceEventRow.last_seen) < cutoff,
                    col(PresenceEventRow.id) > after_id,
                )
                .order_by(col(PresenceEventRow.id)).limit(CHUNK_ROWS)
            )
            chunk = _rows(session, query)
            if not chunk:
                break
            after_id = chunk[-1].id
            rewritten += replace_pseudonyms(
                session, [row for row in chunk if row.pseudonym not in keep], now=now
            )
    return rewritten


def unlink_presence(
    session: Session, *, tenant: str, pseudonyms: Collection[str], now: datetime
) -> int:
    """Erasure: every event of these pseudonyms, whatever its age, loses the pseudonym."""
    if not pseudonyms:
        return 0
    query = select(PresenceEventRow).where(
        col(PresenceEventRow.tenant) == tenant,
        col(PresenceEventRow.pseudonym).in_(list(pseudonyms)),
    )
    return replace_pseudonyms(session, _rows(session, query), now=now)
