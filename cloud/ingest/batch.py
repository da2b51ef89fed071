"""Turning a batch of received MQTT messages into one database transaction.

Pure of MQTT: the consumer hands over (topic, payload) pairs and acknowledges them only
after `write_batch` returned, i.e. after the commit. Every message ends up somewhere:
stored events, a gateway health row, occupancy rows, or a dead letter with the reason. A message the
database itself rejects is isolated by retrying the batch one message at a time, so one
poison message cannot block the others; an unreachable database raises, and the caller
waits and retries the whole batch (nothing was acknowledged, nothing is lost).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db import is_transient, session_scope
from cloud.metrics import (
    DEAD_LETTERS,
    INGEST_BATCH_MESSAGES,
    INGEST_EVENTS,
    INGEST_LAG_SECONDS,
    INGEST_MESSAGES,
)
from cloud.presence.crud import insert_events, record_dead_letter, upsert_gateway_status
from cloud.presence.occupancy import store_report
from cloud.presence.rollups import EventSpan, mark_events
from cloud.presence.triggers import record_presence_triggers
from shared.errors import ContractError
from shared.occupancy import OccupancyReport, decode_occupancy_report
from shared.presence import (
    PresenceBatch,
    PresenceEvent,
    PseudonymScope,
    decode_presence_batch,
)
from shared.status import GatewayStatus, decode_gateway_status
from shared.topics import TopicChannel, parse_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One received message. `generation` counts broker connections: a message may only
    be acknowledged on the connection that delivered it."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Decoded:
    inbound: Inbound
    presence: PresenceBatch | None = None
    status: GatewayStatus | None = None
    occupancy: OccupancyReport | None = None
    error: str | None = None
    ignored: bool = False

    @property
    def channel(self) -> str:
        parts = self.inbound.topic.rsplit("/", 1)
        return parts[-1] if parts[-1] in {c.value for c in TopicChannel} else "unknown"


@dataclass(slots=True)
class BatchOutcome:
    events_new: int = 0
    events_duplicate: int = 0
    statuses: int = 0
    #: Occupancy reports stored (one per gateway and minute).
    occupancy_reports: int = 0
    dead_letters: int = 0
    ignored: int = 0
    #: Scenario triggers recorded for customers' presence (the scenario worker's cue).
    triggers: int = 0

    def add(self, other: BatchOutcome) -> None:
        self.events_new += other.events_new
        self.events_duplicate += other.events_duplicate
        self.statuses += other.statuses
        self.occupancy_reports += other.occupancy_reports
        self.dead_letters += other.dead_letters
        self.ignored += other.ignored
        self.triggers += other.triggers


def decode(inbound: Inbound, *, tenants: Collection[str] | None = None) -> Decoded:
    """Classify one message; never raises (a bad message becomes an error to dead-letter).

    With `tenants`, presence of any other tenant is refused (a misconfigured gateway or
    broker ACL), and status of other tenants is ignored (retained reports of tenants this
    orchestrator does not serve).
    """
    try:
        address = parse_topic(inbound.topic)
        if tenants is not None and address.tenant not in tenants:
            if address.channel is TopicChannel.STATUS:
                return Decoded(inbound, ignored=True)
            raise ContractError(f"tenant {address.tenant!r} is not configured here")
        if address.channel is TopicChannel.PRESENCE:
            return Decoded(inbound, presence=decode_presence_batch(inbound.payload, topic=address))
        if address.channel is TopicChannel.OCCUPANCY:
            report = decode_occupancy_report(inbound.payload, topic=address)
            return Decoded(inbound, occupancy=report)
        if address.channel is TopicChannel.STATUS:
            if not inbound.payload:  # a cleared retained status: nothing to record
                return Decoded(inbound, ignored=True)
            status = decode_gateway_status(inbound.payload)
            address.check_sender("gateway status", tenant=status.tenant, store=status.store,
                                 gateway=status.gateway)
            return Decoded(inbound, status=status)
        raise ContractError(f"the orchestrator does not consume {address.channel.value} messages")
    except ContractError as error:
        return Decoded(inbound, error=str(error))


def decode_all(
    inbounds: Sequence[Inbound], *, tenants: Collection[str] | None = None
) -> list[Decoded]:
    return [decode(inbound, tenants=tenants) for inbound in inbounds]


def write_batch(
    engine: Engine,
    inbounds: Sequence[Inbound],
    *,
    received_at: datetime,
    tenants: Collection[str] | None = None,
) -> BatchOutcome:
    """Decode and store a batch in one transaction; raises only for transient database
    errors."""
    return write_decoded(
        engine, decode_all(inbounds, tenants=tenants), received_at=received_at
    )


def write_decoded(
    engine: Engine, decoded: Sequence[Decoded], *, received_at: datetime
) -> BatchOutcome:
    """Store decoded messages in one transaction (see `write_batch`)."""
    try:
        return _write_committed(engine, decoded, received_at=received_at)
    except Exception as error:
        if is_transient(error):
            raise
        if len(decoded) == 1:
            return _reject(engine, decoded[0], error, received_at=received_at)
        log.warning("batch of %d messages rejected by the database (%s); retrying one by one",
                    len(decoded), type(error).__name__)
    outcome = BatchOutcome()
    for item in decoded:
        try:
            outcome.add(_write_committed(engine, [item], received_at=received_at))
        except Exception as error:
            if is_transient(error):
                raise
            outcome.add(_reject(engine, item, error, received_at=received_at))
    return outcome


def _write_committed(
    engine: Engine, decoded: Sequence[Decoded], *, received_at: datetime
) -> BatchOutcome:
    with session_scope(engine) as session:
        outcome = _write(session, decoded, received_at=received_at)
        session.commit()
    _count(decoded, outcome)
    return outcome


def _write(session: Session, decoded: Sequence[Decoded], *, received_at: datetime
           ) -> BatchOutcome:
    outcome = BatchOutcome()
    events = [event for item in decoded if item.presence for event in item.presence.events]
    new_ids = insert_events(session, events=events, received_at=received_at)
    outcome.events_new = len(new_ids)
    outcome.events_duplicate = len(events) - len(new_ids)
    for item in decoded:
        if item.status is not None:
            upsert_gateway_status(session, status=item.status, received_at=received_at)
            outcome.statuses += 1
        elif item.occupancy is not None:
            store_report(session, report=item.occupancy, received_at=received_at)
            outcome.occupancy_reports += 1
        elif item.error is not None:
            _dead_letter(session, item, item.error, received_at=received_at)
            outcome.dead_letters += 1
        elif item.ignored:
            outcome.ignored += 1
    if new_ids:
        # Only events stored just now: a redelivered event's triggers were committed with it.
        fresh = {event.event_id: event for event in events if event.event_id in new_ids}
        outcome.triggers = record_presence_triggers(
            session, events=list(fresh.values()), now=received_at
        )
        # The footfall roll-ups of the hours these events may change are rebuilt by the
        # roll-up step; a replay stores nothing, so it marks nothing.
        mark_events(session, spans=[_span(event) for event in fresh.values()], now=received_at)
    return outcome


def _span(event: PresenceEvent) -> EventSpan:
    return EventSpan(
        tenant=event.tenant, store=event.store, pseudonym=event.pseudonym,
        stable=event.scope == PseudonymScope.STABLE, first_seen=event.first_seen,
        last_seen=event.last_seen,
    )


def _dead_letter(session: Session, item: Decoded, reason: str, *, received_at: datetime) -> None:
    record_dead_letter(
        session, topic=item.inbound.topic, payload=item.inbound.payload, reason=reason,
        received_at=received_at,
    )
    DEAD_LETTERS.labels(channel=item.channel).inc()
    log.warning("dead letter on %s: %s", item.inbound.topic[:200], reason[:500])


def _reject(
    engine: Engine, item: Decoded, error: Exception, *, received_at: datetime
) -> BatchOutcome:
    """Storing this message failed for a reason other than an unreachable database (the
    database refused its data, or a defect): keep it as a dead letter instead."""
    cause = getattr(error, "orig", None) or error
    log.error("message on %s could not be stored", item.inbound.topic[:200], exc_info=error)
    reason = f"storing the message failed: {type(cause).__name__}"
    with session_scope(engine) as session:
        _dead_letter(session, item, reason, received_at=received_at)
        session.commit()
    INGEST_MESSAGES.labels(channel=item.channel, outcome="dead_letter").inc()
    return BatchOutcome(dead_letters=1)


def _count(decoded: Sequence[Decoded], outcome: BatchOutcome) -> None:
    for item in decoded:
        if item.error is not None:
            result = "dead_letter"
        elif item.ignored:
            result = "ignored"
        else:
            result = "stored"
        INGEST_MESSAGES.labels(channel=item.channel, outcome=result).inc()
    INGEST_EVENTS.labels(outcome="new").inc(outcome.events_new)
    INGEST_EVENTS.labels(outcome="duplicate").inc(outcome.events_duplicate)
    INGEST_BATCH_MESSAGES.observe(len(decoded))
    committed_at = datetime.now(UTC)
    for item in decoded:
        if item.presence is not None:
            INGEST_LAG_SECONDS.observe(
                max(0.0, (committed_at - item.presence.sent_at).total_seconds())
            )
