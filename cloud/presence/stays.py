"""One visit, one `presence.enter`: a customer's stay in a store, whichever source saw it.

A customer can be recognised in a store two ways: a gateway sees their phone (its app
beacon, the guest Wi-Fi), or their app reports that the phone's operating system noticed
the store's own beacon (`cloud.beacons`). Both become the same presence triggers, so
without a rule one visit seen both ways would start two journeys.

The rule: a `store_stay` row per customer and store remembers who opened the visit and
when the customer was last seen there, by either source. An enter from one source within
`VISIT_GAP` of the last sighting of a stay the *other* source opened joins that stay: it
records no trigger. Whichever source comes first opens the visit and gives its
`presence.enter`; every later sighting, of either source, keeps the stay alive. A repeated
store-beacon enter within the gap (the app reporting the same region twice) joins too.
Between gateways nothing changes: each gateway's enter is a trigger as before, and a
scenario's `cooldown` is what keeps three gateways of one visit from three greetings.

Rows are location data: only customers who said yes to location-based marketing get one
(the callers check), a refusal forgets them (`forget_store_stays`), erasure cascades. A
customer has at most one row per store, the latest visit's, overwritten by the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Index, Integer, String, UniqueConstraint, delete
from sqlmodel import Field, Session, SQLModel, col, select

from cloud.db import UtcDateTime

#: Sightings of a customer in one store, from either source, that are closer than this
#: are one visit. A phone in a pocket drops out of a gateway's range and out of a beacon
#: region for minutes at a time (iOS reports a region exit only after about 30 s without
#: the beacon, a gateway's adaptive exit waits up to 10 minutes), and a customer back
#: within a quarter of an hour has not made a new visit.
VISIT_GAP = timedelta(minutes=15)


class StaySource(StrEnum):
    #: A gateway saw the customer's phone (presence events over MQTT).
    GATEWAY = "gateway"
    #: The customer's app reported the store's beacon (`cloud.beacons`).
    STORE_BEACON = "store_beacon"


class StoreStay(SQLModel, table=True):
    __tablename__ = "store_stay"
    __table_args__ = (
        UniqueConstraint("customer_id", "store", name="uq_store_stay_customer_store"),
        Index("ix_store_stay_seen", "last_seen_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    customer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False)
    )
    store: str = Field(max_length=64)
    #: The source whose enter opened the visit (and gave its presence.enter).
    opened_by: StaySource = Field(sa_type=String(16))
    opened_at: datetime = Field(sa_type=UtcDateTime)
    #: The latest sighting by either source.
    last_seen_at: datetime = Field(sa_type=UtcDateTime)


StayKey = tuple[int, str]


def load_stays(session: Session, customer_ids: Sequence[int]) -> dict[StayKey, StoreStay]:
    """The stays of these customers, by (customer, store)."""
    if not customer_ids:
        return {}
    rows = session.exec(select(StoreStay).where(col(StoreStay.customer_id).in_(customer_ids)))
    return {(row.customer_id, row.store): row for row in rows}


def note_sighting(
    session: Session, stays: dict[StayKey, StoreStay], *, tenant: str, customer_id: int,
    store: str, source: StaySource, at: datetime, entering: bool,
) -> bool:
    """Record that `source` saw the customer in `store` at `at`; True when an enter
    begins a visit (its trigger is to be recorded), False when it joins one (module
    docstring). Anything but an enter only keeps the stay alive, and returns True. The
    caller flushes."""
    key = (customer_id, store)
    stay = stays.get(key)
    current = stay is not None and at - stay.last_seen_at <= VISIT_GAP
    if stay is not None and current:
        stay.last_seen_at = max(stay.last_seen_at, at)
        session.add(stay)
        if not entering:
            return True
        return source is StaySource.GATEWAY and stay.opened_by == StaySource.GATEWAY
    if stay is None:
        stay = StoreStay(tenant=tenant, customer_id=customer_id, store=store,
                         opened_by=source, opened_at=at, last_seen_at=at)
        stays[key] = stay
    else:  # a visit long over: this sighting begins the next one
        stay.opened_by, stay.opened_at, stay.last_seen_at = source, at, at
    session.add(stay)
    return True


def forget_store_stays(session: Session, *, customer_id: int) -> None:
    """The customer's location may no longer be used: their stays go."""
    session.execute(delete(StoreStay).where(col(StoreStay.customer_id) == customer_id))

