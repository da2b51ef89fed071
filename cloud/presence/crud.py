"""Writing presence: idempotent bulk inserts, dead letters, gateway health and its history;
reading visits.

Inserts go through SQLAlchemy Core with `ON CONFLICT DO NOTHING` on (event_id, last_seen)
(both PostgreSQL and SQLite speak it; `EVENT_UNIQUE_KEY` says why the key holds the
partition key), so a redelivered message is harmless and costs one round trip. On a
partitioned table an event whose `last_seen` falls in no partition (a gateway clock days
ahead, an event older than retention) is refused by the database, and its message becomes
a dead letter (`cloud.ingest.batch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, case, delete
from sqlmodel import Session, SQLModel, col, select

from cloud.bulk import insert_rows
from cloud.db import dialect_insert
from cloud.presence.models import (
    EVENT_UNIQUE_KEY,
    HEALTH_SLOT_S,
    DeadLetter,
    GatewayHealth,
    GatewayHealthSample,
    PresenceEventRow,
)
from shared.presence import PresenceEvent, PseudonymScope
from shared.status import GatewayStatus
from shared.topics import TOPIC_ROOT

if TYPE_CHECKING:
    import psycopg

#: Enough of a bad message to see what went wrong; a hostile publisher cannot fill
#: the database with megabytes per message.
DEAD_LETTER_MAX_BYTES = 4096
#: Reasons are our own error messages; the cap only guards against a runaway one.
DEAD_LETTER_MAX_REASON = 2000
#: A phone that drops out of range for a few minutes (fitting room, metal shelving,
#: a second gateway taking over) is still on the same visit.
VISIT_GAP = timedelta(minutes=5)

#: From this many events on, PostgreSQL gets COPY: below it, an array-per-column INSERT
#: (`insert_rows`) is about as fast and the staging table is not worth its round trips.
COPY_MIN_EVENTS = 200

EVENT_TABLE: Table = SQLModel.metadata.tables[PresenceEventRow.__tablename__]
_COPY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "varchar"), ("tenant", "varchar"), ("store", "varchar"),
    ("gateway", "varchar"), ("zone", "varchar"), ("pseudonym", "varchar"),
    ("key_id", "varchar"), ("scope", "varchar"), ("kind", "varchar"), ("randomized", "bool"),
    ("transition", "varchar"), ("rssi", "float8"), ("first_seen", "timestamptz"),
    ("last_seen", "timestamptz"), ("dwell_s", "float8"), ("sightings", "int4"),
    ("received_at", "timestamptz"),
)
_COLUMN_LIST = ", ".join(name for name, _ in _COPY_COLUMNS)
_COPY_TYPES = tuple(kind for _, kind in _COPY_COLUMNS)
_STAGE = "presence_event_stage"
#: Temporary: private to the connection, emptied at commit, never WAL-logged.
_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ("
    + ", ".join(f"{name} {kind} NOT NULL" for name, kind in _COPY_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
GATEWAY_TABLE: Table = SQLModel.metadata.tables[GatewayHealth.__tablename__]
HISTORY_TABLE: Table = SQLModel.metadata.tables[GatewayHealthSample.__tablename__]
#: Reported by a gateway online; an offline report (last will) leaves them as they were
#: (the will is composed when the agent starts: before its first heartbeat's figures).
KEPT_WHEN_OFFLINE = ("active_key_id", "key_ids", "cpu_percent", "memory_bytes",
                     "temperature_c", "disk_free_bytes")


def event_row(event: PresenceEvent, received_at: datetime) -> dict[str, Any]:
    return {
        "event_id": event.event_id, "tenant": event.tenant, "store": event.store,
        "gateway": event.gateway, "zone": event.zone, "pseudonym": event.pseudonym,
        "key_id": event.key_id, "scope": event.scope.value, "kind": event.kind.value,
        "randomized": event.randomized, "transition": event.transition.value,
        "rssi": event.rssi, "first_seen": event.first_seen, "last_seen": event.last_seen,
        "dwell_s": event.dwell_s, "sightings": event.sightings, "received_at": received_at,
    }


def insert_events(
    session: Session, *, events: Sequence[PresenceEvent], received_at: datetime
) -> set[str]:
    """Store events, skipping ids already stored; return the ids that were new.

    On PostgreSQL, large batches go through COPY into a session-local staging table and
    one INSERT ... SELECT ... ON CONFLICT DO NOTHING: several times the speed of a
    multi-row INSERT, with the same idempotency.
    """
    if not events:
        return set()
    if len(events) >= COPY_MIN_EVENTS and session.get_bind().dialect.name == "postgresql":
        return _copy_events(session, events=events, received_at=received_at)
    rows = insert_rows(
        session.connection(), EVENT_TABLE, [event_row(event, received_at) for event in events],
        skip_conflicts_on=list(EVENT_UNIQUE_KEY), returning=[EVENT_TABLE.c.event_id],
    )
    return {row[0] for row in rows}


def _copy_events(
    session: Session, *, events: Sequence[PresenceEvent], received_at: datetime
) -> set[str]:
    raw = cast("psycopg.Connection[Any]", session.connection().connection.driver_connection)
    with raw.cursor() as cursor:
        cursor.execute(_STAGE_DDL)
        with cursor.copy(f"COPY {_STAGE} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(_COPY_TYPES))
            for event in events:
                copy.write_row((
                    event.event_id, event.tenant, event.store, event.gateway, event.zone,
                    event.pseudonym, event.key_id, event.scope.value, event.kind.value,
                    event.randomized, event.transition.value, event.rssi, event.first_seen,
                    event.last_seen, event.dwell_s, event.sightings, received_at,
                ))
        cursor.execute(
            f"INSERT INTO presence_event ({_COLUMN_LIST}) "
            f"SELECT {_COLUMN_LIST} FROM {_STAGE} "
            # DO NOTHING also skips a duplicate within the same statement (a message and
            # its redelivered copy in one batch).
            f"ON CONFLICT ({', '.join(EVENT_UNIQUE_KEY)}) DO NOTHING RETURNING event_id"
        )
        new = {row[0] for row in cursor.fetchall()}
        cursor.execute(f"TRUNCATE {_STAGE}")
    return new


def record_dead_letter(
    session: Session, *, topic: str, payload: bytes, reason: str, received_at: datetime
) -> DeadLetter:
    letter = DeadLetter(
        received_at=received_at, topic=topic[:512], reason=reason[:DEAD_LETTER_MAX_REASON],
        payload=payload[:DEAD_LETTER_MAX_BYTES], payload_size=len(payload),
        truncated=len(payload) > DEAD_LETTER_MAX_BYTES,
    )
    session.add(letter)
    return letter


def recent_dead_letters(
    session: Session, *, limit: int, tenant: str | None = None
) -> Sequence[DeadLetter]:
    """The newest dead letters; of one tenant's gateways when `tenant` is given (by their
    topic: a message that could not be read may still name where it came from)."""
    query = select(DeadLetter)
    if tenant is not None:
        prefix = f"{TOPIC_ROOT}/{tenant}/"
        query = query.where(col(DeadLetter.topic).startswith(prefix, autoescape=True))
    return session.exec(query.order_by(col(DeadLetter.id).desc()).limit(limit)).all()


def upsert_gateway_status(
    session: Session, *, status: GatewayStatus, received_at: datetime
) -> None:
    """Keep the newest report per gateway; an older one (a late retained copy) is ignored."""
    refused = status.config_refused
    values = {
        "tenant": status.tenant, "store": status.store, "gateway": status.gateway,
        "online": status.online, "status_sent_at": status.sent_at, "received_at": received_at,
        "software_version": status.software_version[:64], "uptime_s": status.uptime_s,
        "queue_depth": status.queue_depth, "published": status.published,
        "dropped": status.dropped, "rejected_frames": status.rejected_frames,
        "devices_tracked": status.devices_tracked, "active_key_id": status.active_key_id,
        "sources": {name: health.model_dump() for name, health in status.sources.items()},
        "config_version": status.config_version,
        "config_refused_version": refused.version if refused else None,
        "config_refused_reason": refused.reason if refused else None,
        "cpu_percent": status.cpu_percent, "memory_bytes": status.memory_bytes,
        "temperature_c": status.temperature_c, "disk_free_bytes": status.disk_free_bytes,
        "key_ids": status.key_ids,
    }
    insert = dialect_insert(session, GATEWAY_TABLE).values(values)
    keys = ("tenant", "store", "gateway")
    updates: dict[str, Any] = {name: insert.excluded[name] for name in values if name not in keys}
    for name in KEPT_WHEN_OFFLINE:
        # The last will is composed when the agent starts: what it says of the keys may
        # be older than the last heartbeat, which stays the word on them.
        updates[name] = case((insert.excluded.online, insert.excluded[name]),
                             else_=GATEWAY_TABLE.c[name])
    statement = insert.on_conflict_do_update(
        index_elements=list(keys), set_=updates,
        where=GATEWAY_TABLE.c.status_sent_at <= insert.excluded.status_sent_at,
    )
    session.connection().execute(statement)
    if status.online:
        _record_health_sample(session, status)


def health_slot(at: datetime) -> datetime:
    """The start of the `HEALTH_SLOT_S` slot `at` falls in."""
    seconds = int(at.timestamp())
    return datetime.fromtimestamp(seconds - seconds % HEALTH_SLOT_S, at.tzinfo)


def _record_health_sample(session: Session, status: GatewayStatus) -> None:
    """Keep the heartbeat as its slot's sample: the newest of the slot wins, the outbox's
    largest depth is kept. A redelivered heartbeat lands on its own slot again, so it
    changes nothing (the slot is the gateway's clock, not the time of receipt)."""
    values = {
        "tenant": status.tenant, "store": status.store, "gateway": status.gateway,
        "slot": health_slot(status.sent_at), "sent_at": status.sent_at,
        "software_version": status.software_version[:64], "uptime_s": status.uptime_s,
        "queue_depth": status.queue_depth, "queue_depth_max": status.queue_depth,
        "published": status.published, "dropped": status.dropped,
        "rejected_frames": status.rejected_frames, "devices_tracked": status.devices_tracked,
        "config_version": status.config_version, "cpu_percent": status.cpu_percent,
        "memory_bytes": status.memory_bytes, "temperature_c": status.temperature_c,
        "disk_free_bytes": status.disk_free_bytes,
        "sources": {name: {"alive": health.alive, "frames": health.frames,
                           "errors": health.errors, "restarts": health.restarts}
                    for name, health in status.sources.items()},
    }
    insert = dialect_insert(session, HISTORY_TABLE).values(values)
    keys = ("tenant", "store", "gateway", "slot")
    columns = HISTORY_TABLE.c
    changes: dict[str, Any] = {name: insert.excluded[name] for name in values
                               if name not in keys}
    changes["queue_depth_max"] = case(
        (insert.excluded.queue_depth > columns.queue_depth_max, insert.excluded.queue_depth),
        else_=columns.queue_depth_max)
    session.connection().execute(insert.on_conflict_do_update(
        index_elements=list(keys), set_=changes,
        where=columns.sent_at <= insert.excluded.sent_at))


def health_history(
    session: Session, *, tenant: str, store: str, gateway: str, since: datetime,
) -> Sequence[GatewayHealthSample]:
    """The gateway's samples from `since` on, oldest first."""
    return session.exec(
        select(GatewayHealthSample).where(
            col(GatewayHealthSample.tenant) == tenant, col(GatewayHealthSample.store) == store,
            col(GatewayHealthSample.gateway) == gateway, col(GatewayHealthSample.slot) >= since,
        ).order_by(col(GatewayHealthSample.slot))
    ).all()


def purge_health_history(session: Session, *, before: datetime) -> int:
    """Delete every gateway's samples older than `before`; how many went."""
    result = session.connection().execute(
        delete(HISTORY_TABLE).where(HISTORY_TABLE.c.slot < before))
    return int(result.rowcount or 0)


def list_gateways(session: Session, *, tenant: str) -> Sequence[GatewayHealth]:
    query = (
        select(GatewayHealth).where(col(GatewayHealth.tenant) == tenant)
        .order_by(col(GatewayHealth.store), col(GatewayHealth.gateway))
    )
    return session.exec(query).all()


@dataclass(frozen=True, slots=True)
class Visit:
    """One device's continuous stay, merged across every gateway that reported it."""

    tenant: str
    store: str
    zone: str | None
    pseudonym: str
    start: datetime
    end: datetime
    gateways: frozenset[str]
    events: int
    #: False once any event was under a daily pseudonym: then nothing ties this visit
    #: to the same device's other days.
    stable: bool = True

    @property
    def dwell_s(self) -> float:
        return (self.end - self.start).total_seconds()


def merge_visits(
    rows: Iterable[PresenceEventRow], *, by_zone: bool = True, gap: timedelta = VISIT_GAP
) -> list[Visit]:
    """Merge events of the same device (and zone) whose spans overlap or lie within `gap`."""
    groups: dict[tuple[str, str, str | None, str], list[PresenceEventRow]] = {}
    for row in rows:
        key = (row.tenant, row.store, row.zone if by_zone else None, row.pseudonym)
        groups.setdefault(key, []).append(row)
    visits: list[Visit] = []
    for (tenant, store, zone, pseudonym), members in groups.items():
        members.sort(key=lambda row: row.first_seen)
        current: list[PresenceEventRow] = []
        end = members[0].last_seen
        for row in members:
            if current and row.first_seen > end + gap:
                visits.append(_visit(tenant, store, zone, pseudonym, current))
                current = []
            end = row.last_seen if not current else max(end, row.last_seen)
            current.append(row)
        visits.append(_visit(tenant, store, zone, pseudonym, current))
    visits.sort(key=lambda visit: (visit.start, visit.pseudonym, visit.zone or ""))
    return visits


def _visit(
    tenant: str, store: str, zone: str | None, pseudonym: str, rows: list[PresenceEventRow]
) -> Visit:
    return Visit(
        tenant=tenant, store=store, zone=zone, pseudonym=pseudonym,
        start=rows[0].first_seen, end=max(row.last_seen for row in rows),
        gateways=frozenset(row.gateway for row in rows), events=len(rows),
        stable=all(row.scope == PseudonymScope.STABLE for row in rows),
    )


def store_visits(
    session: Session,
    *,
    tenant: str,
    store: str,
    since: datetime,
    until: datetime,
    by_zone: bool = True,
    pseudonyms: Sequence[str] | None = None,
) -> list[Visit]:
    """Visits in a store that touch [since, until), per zone or for the store as a whole."""
    query = select(PresenceEventRow).where(
        col(PresenceEventRow.tenant) == tenant,
        col(PresenceEventRow.store) == store,
        col(PresenceEventRow.first_seen) < until,
        col(PresenceEventRow.last_seen) >= since - VISIT_GAP,
    )
    if pseudonyms is not None:
        query = query.where(col(PresenceEventRow.pseudonym).in_(list(pseudonyms)))
    rows = session.exec(query).all()
    return [visit for visit in merge_visits(rows, by_zone=by_zone) if visit.end >= since]
