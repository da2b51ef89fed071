"""Stores and geofences in the database, and each process's index kept in step with it.

Every geofence change (put or delete) bumps the tenant's counter in `geofence_version` in
the same transaction. `StoredGeofences` is a process's `GeofenceRegistry`: before a
question about a tenant it reads that counter (one primary-key lookup) and, when it moved,
rebuilds the tenant's tree from the stored definitions and swaps it in whole, so API
processes and workers sharing one database answer from the same geofences without
talking to each other.

Deleting a geofence ends the stays in it there and then (an exit trigger each), instead
of leaving them to the next report of each customer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, SQLModel, col, select

from cloud.customers.models import Customer
from cloud.db import dialect_insert
from cloud.places.geofences import Geofence
from cloud.places.hours import time_zone
from cloud.places.index import GeofenceIndex, GeofenceRegistry
from cloud.places.models import (
    GeofenceDefinition,
    GeofencePresence,
    GeofenceVersion,
    StoreCreate,
    StoreRow,
)
from cloud.places.parse import geofence_to_dict, parse_geofence
from cloud.places.validation import PlaceError, check_id, check_segment
from cloud.preferences.models import quiet_columns
from cloud.triggers import TriggerKind, record_trigger
from shared.presence import Transition

#: Parsed geofences kept per process: a tenant has tens of geofences, a deployment some
#: thousands; past this the least recently used are parsed again when needed.
PARSED_CACHE_SIZE = 4096

TRIGGER_KINDS: Mapping[Transition, TriggerKind] = {
    Transition.ENTER: TriggerKind.GEOFENCE_ENTER,
    Transition.DWELL: TriggerKind.GEOFENCE_DWELL,
    Transition.EXIT: TriggerKind.GEOFENCE_EXIT,
}

_VERSION_TABLE = SQLModel.metadata.tables[GeofenceVersion.__tablename__]


class StoreInUseError(ValueError):
    """A store still has geofences: delete or move them first."""


# Stores


def get_store(session: Session, *, tenant: str, key: str) -> StoreRow | None:
    """The tenant's store `key` (name, time_zone), or None."""
    return session.exec(
        select(StoreRow).where(StoreRow.tenant == tenant, StoreRow.key == key)
    ).first()


def list_stores(session: Session, *, tenant: str) -> Sequence[StoreRow]:
    return session.exec(
        select(StoreRow).where(StoreRow.tenant == tenant).order_by(col(StoreRow.key))
    ).all()


def put_store(
    session: Session, *, tenant: str, key: str, data: StoreCreate, now: datetime
) -> StoreRow:
    """Create or update a store (its quiet hours too: left out, the tenant's apply);
    PlaceError for a bad key or time zone."""
    check_segment("store", key)
    try:
        time_zone(data.time_zone)
    except PlaceError as error:
        raise PlaceError("time_zone", error.reason) from None
    store = get_store(session, tenant=tenant, key=key)
    if store is None:
        store = StoreRow(tenant=tenant, key=key, name=data.name, time_zone=data.time_zone,
                         created_at=now, updated_at=now)
    else:
        store.name, store.time_zone, store.updated_at = data.name, data.time_zone, now
    for column, value in quiet_columns(data.quiet_hours).items():
        setattr(store, column, value)
    session.add(store)
    session.flush()
    return store


def delete_store(session: Session, *, tenant: str, key: str) -> StoreRow | None:
    """Delete a store without geofences (StoreInUseError otherwise); None if absent."""
    store = get_store(session, tenant=tenant, key=key)
    if store is None:
        return None
    used_by = store_geofence_ids(session, tenant=tenant, key=key)
    if used_by:
        raise StoreInUseError(
            f"store {key!r} still has geofences ({', '.join(used_by[:10])}): delete them or"
            " give them another store first"
        )
    session.delete(store)
    session.flush()
    return store


def store_geofence_ids(session: Session, *, tenant: str, key: str) -> list[str]:
    return list(session.exec(
        select(GeofenceDefinition.geofence_id)
        .where(GeofenceDefinition.tenant == tenant, GeofenceDefinition.store == key)
        .order_by(col(GeofenceDefinition.geofence_id))
    ).all())


# Geofences


def tenant_geofence_version(session: Session, *, tenant: str) -> int:
    """The tenant's geofence version: 0 before the first change, then +1 per change."""
    version = session.exec(
        select(GeofenceVersion.version).where(GeofenceVersion.tenant == tenant)
    ).first()
    return 0 if version is None else int(version)


def _bump_version(session: Session, *, tenant: str, now: datetime) -> int:
    """The tenant's next version, counted atomically: the row lock makes concurrent
    changes take turns, so no two changes share a version."""
    insert = dialect_insert(session, _VERSION_TABLE).values(
        tenant=tenant, version=1, updated_at=now
    )
    statement = insert.on_conflict_do_update(
        index_elements=["tenant"],
        set_={"version": _VERSION_TABLE.c.version + 1, "updated_at": now},
    ).returning(_VERSION_TABLE.c.version)
    return int(session.connection().execute(statement).scalar_one())


def get_geofence(session: Session, *, tenant: str, geofence_id: str) -> GeofenceDefinition | None:
    return session.exec(select(GeofenceDefinition).where(
        GeofenceDefinition.tenant == tenant, GeofenceDefinition.geofence_id == geofence_id
    )).first()


def list_geofences(session: Session, *, tenant: str) -> Sequence[GeofenceDefinition]:
    return session.exec(
        select(GeofenceDefinition).where(GeofenceDefinition.tenant == tenant)
        .order_by(col(GeofenceDefinition.geofence_id))
    ).all()


def put_geofence(
    session: Session, *, tenant: str, geofence_id: str, definition: Mapping[str, Any],
    now: datetime,
) -> GeofenceDefinition:
    """Create or replace a geofence from its JSON definition (`cloud.places.parse`).

    `id` and `tenant` may be left out (the path gives them; if present they must agree),
    `timezone` too (the store's is used). The store must exist. Raises PlaceError naming
    the first problem. Stays under way keep going; a changed dwell threshold applies to
    them (as in the tracker).
    """
    check_id("id", geofence_id)
    data = dict(definition)
    for name, expected in (("id", geofence_id), ("tenant", tenant)):
        if data.setdefault(name, expected) != expected:
            raise PlaceError(name, "must match the path (or be left out)")
    store_key = data.get("store")
    if not isinstance(store_key, str):
        raise PlaceError("store", "is required: the key of one of the tenant's stores")
    store = get_store(session, tenant=tenant, key=store_key)
    if store is None:
        raise PlaceError("store", "is not a store of this tenant: define the store first"
                                  " (PUT .../stores/<key>)")
    data.setdefault("timezone", store.time_zone)
    geofence = parse_geofence(data)
    version = _bump_version(session, tenant=tenant, now=now)
    row = get_geofence(session, tenant=tenant, geofence_id=geofence_id)
    if row is None:
        row = GeofenceDefinition(tenant=tenant, geofence_id=geofence_id, store=geofence.store,
                                 spec={}, version=version, created_at=now, updated_at=now)
    row.spec = geofence_to_dict(geofence)
    row.store, row.version, row.updated_at = geofence.store, version, now
    session.add(row)
    _reschedule_dwells(session, geofence=geofence)
    session.flush()
    return row


def _reschedule_dwells(session: Session, *, geofence: Geofence) -> None:
    """Move the due time of stays not yet dwelt to the geofence's (new) threshold."""
    after = timedelta(seconds=geofence.dwell_after_s)
    stays = session.exec(select(GeofencePresence).where(
        GeofencePresence.tenant == geofence.tenant,
        GeofencePresence.geofence_id == geofence.id,
        col(GeofencePresence.dwell_emitted).is_(False),
    )).all()
    for stay in stays:
        stay.dwell_due_at = stay.entered_at + after
        session.add(stay)


def delete_geofence(
    session: Session, *, tenant: str, geofence_id: str, now: datetime
) -> GeofenceDefinition | None:
    """Delete a geofence and end the stays in it (an exit trigger each); None if absent."""
    row = get_geofence(session, tenant=tenant, geofence_id=geofence_id)
    if row is None:
        return None
    _bump_version(session, tenant=tenant, now=now)
    customer_ids = session.exec(
        select(GeofencePresence.customer_id).distinct().where(
            GeofencePresence.tenant == tenant, GeofencePresence.geofence_id == geofence_id)
        .order_by(col(GeofencePresence.customer_id))
    ).all()
    for customer_id in customer_ids:
        lock_customer(session, customer_id=customer_id)
        # Read again under the lock: a report may have ended the stay meanwhile.
        stay = session.exec(select(GeofencePresence).where(
            GeofencePresence.customer_id == customer_id,
            GeofencePresence.geofence_id == geofence_id,
        )).first()
        if stay is None:
            continue
        # As the tracker does: an exit never precedes the report that placed them inside.
        record_geofence_trigger(
            session, tenant=tenant, customer_id=customer_id, geofence_id=geofence_id,
            store=stay.store, kind=Transition.EXIT, at=max(now, stay.last_seen_at), now=now,
        )
        session.delete(stay)
    session.delete(row)
    session.flush()
    return row


# Shared with cloud.places.locations


def lock_customer(session: Session, *, customer_id: int, skip_locked: bool = False) -> bool:
    """Take the customer's row lock for the rest of the transaction, so that one process
    at a time reads and writes that customer's stays. False when `skip_locked` and another
    transaction holds it (PostgreSQL), or when the customer does not exist.

    PostgreSQL: SELECT ... FOR UPDATE [SKIP LOCKED]. SQLite has no row locks and its
    driver starts a transaction only at the first write, so a no-op UPDATE takes the
    database's write lock before the stays are read (waiting for the busy timeout).
    """
    if session.get_bind().dialect.name == "postgresql":
        found = session.exec(
            select(Customer.id).where(Customer.id == customer_id)
            .with_for_update(skip_locked=skip_locked)
        ).first()
        return found is not None
    result = session.execute(
        update(Customer).where(col(Customer.id) == customer_id).values(id=Customer.id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def geofence_source_key(customer_id: int, geofence_id: str, kind: Transition, at: datetime
                        ) -> str:
    """The trigger's replay-proof key: one transition, one trigger."""
    return f"geofence:{customer_id}:{geofence_id}:{kind.value}:{at.isoformat()}"


def record_geofence_trigger(
    session: Session, *, tenant: str, customer_id: int, geofence_id: str, store: str | None,
    kind: Transition, at: datetime, now: datetime,
) -> int | None:
    """Record a geofence transition for the scenario engine (see `record_trigger`)."""
    return record_trigger(
        session, tenant=tenant, customer_id=customer_id, kind=TRIGGER_KINDS[kind],
        occurred_at=at, source_key=geofence_source_key(customer_id, geofence_id, kind, at),
        now=now, attributes={"geofence": geofence_id, "store": store},
    )


def forget_stays(session: Session, *, customer_id: int) -> int:
    """Delete the customer's stays without exits (they said no to location use)."""
    result = session.execute(
        delete(GeofencePresence).where(col(GeofencePresence.customer_id) == customer_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# Parsed definitions and the per-process index


class _ParsedCache:
    """Geofences parsed from stored definitions, by (tenant, id, version): a definition
    never changes without its version changing, so an entry is never stale."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, int], Geofence] = OrderedDict()

    def get(self, row: GeofenceDefinition) -> Geofence:
        key = (row.tenant, row.geofence_id, row.version)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        geofence = parse_geofence(row.spec)
        with self._lock:
            self._entries[key] = geofence
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return geofence


_PARSED = _ParsedCache(PARSED_CACHE_SIZE)


def stored_geofence(session: Session, *, tenant: str, geofence_id: str) -> Geofence | None:
    """The tenant's geofence `geofence_id` as a domain value, or None."""
    row = get_geofence(session, tenant=tenant, geofence_id=geofence_id)
    return None if row is None else _PARSED.get(row)


def stored_geofences(rows: Iterable[GeofenceDefinition]) -> list[Geofence]:
    return [_PARSED.get(row) for row in rows]


class StoredGeofences:
    """A process's geofence index, kept in step with the database tenant by tenant.

    `index` costs one primary-key read when nothing changed; after a change (in this
    process or any other) it rebuilds the tenant's tree from the stored definitions and
    publishes it with the registry's atomic swap. Thread-safe: rebuilds take turns, and
    readers keep using the index they were given.
    """

    def __init__(self) -> None:
        self.registry = GeofenceRegistry()
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def version(self, tenant: str) -> int | None:
        """The tenant version the current index was built from (None: never loaded)."""
        return self._versions.get(tenant)

    def index(self, session: Session, *, tenant: str) -> tuple[GeofenceIndex, int]:
        """The index holding the tenant's stored geofences, and their tenant version."""
        version = tenant_geofence_version(session, tenant=tenant)
        if self._versions.get(tenant) == version:
            return self.registry.current, version
        with self._lock:
            known = self._versions.get(tenant)
            if known != version:
                # Definitions read after the version are at least as new as it: at worst
                # a later request sees a higher version and rebuilds once more.
                geofences = stored_geofences(list_geofences(session, tenant=tenant))
                self.registry.replace_tenant(tenant, geofences)
                self._versions[tenant] = version
            return self.registry.current, self._versions[tenant]
