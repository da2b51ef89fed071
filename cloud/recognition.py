"""The first rule: a consenting customer walks into a store, their phone gets one push.

Decided inside the ingest transaction (so a crash between storing the event and
deciding cannot lose the trigger), sent after the commit (so a slow push provider never
holds a database transaction open). Each message row is claimed under an idempotency
key built from customer, store and visit start, and a visit that was already greeted
(perhaps from another gateway, perhaps by another worker) is never greeted again.
The scenario engine replaces this rule; the claim-then-send pattern stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.customers.crud import (
    active_push_devices,
    customer_pseudonyms,
    customers_for_pseudonyms,
    deactivate_device,
    has_consent,
)
from cloud.customers.models import ConsentChannel, Customer, Device
from cloud.db import session_scope
from cloud.delivery.push import PushMessage, PushSender, SendResult
from cloud.messages.crud import (
    claim_attempt,
    claim_message,
    give_up,
    record_outcome,
    sent_during,
    stale_pending,
)
from cloud.messages.models import Message, MessageChannel
from cloud.metrics import MESSAGES_SENT, RECOGNITIONS
from cloud.presence.store import store_visits
from cloud.settings import RecognitionSettings
from shared.presence import PresenceEvent, PseudonymScope, Transition

log = logging.getLogger(__name__)

RULE = "recognised_in_store"
#: Presence may be used for marketing only with both answers "yes": being contacted by
#: push, and having store visits used for marketing at all.
REQUIRED_CONSENT = (ConsentChannel.PUSH, ConsentChannel.LOCATION_MARKETING)
#: A welcome push later than this is worse than none: the customer has left the store.
PENDING_MAX_AGE = timedelta(minutes=30)
#: Attempts before a message that keeps getting stranded is given up.
MAX_ATTEMPTS = 3
#: How far around an event its visit is looked for; longer than any real visit.
VISIT_LOOKBACK = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class PlannedPush:
    """A claimed message row and what to send for it."""

    message_id: int
    device_id: int
    message: PushMessage


def plan_recognition_pushes(
    session: Session,
    *,
    events: Sequence[PresenceEvent],
    settings: RecognitionSettings,
    now: datetime,
) -> list[PlannedPush]:
    """Decide (and claim) the pushes the newly stored `events` call for.

    Must run in the transaction that stored the events, after they were inserted.
    """
    if not settings.enabled:
        return []
    enters = [
        event for event in events
        if event.transition is Transition.ENTER and event.scope is PseudonymScope.STABLE
    ]
    planned: list[PlannedPush] = []
    seen: set[tuple[int, str]] = set()
    for tenant in sorted({event.tenant for event in enters}):
        tenant_enters = [event for event in enters if event.tenant == tenant]
        owners = customers_for_pseudonyms(
            session, tenant=tenant, pseudonyms=[event.pseudonym for event in tenant_enters]
        )
        for event in sorted(tenant_enters, key=lambda e: e.first_seen):
            customer_id = owners.get(event.pseudonym)
            if customer_id is None or (customer_id, event.store) in seen:
                continue
            seen.add((customer_id, event.store))
            planned.extend(
                _plan_for_customer(
                    session, customer_id=customer_id, event=event, settings=settings, now=now
                )
            )
    return planned


def _plan_for_customer(
    session: Session,
    *,
    customer_id: int,
    event: PresenceEvent,
    settings: RecognitionSettings,
    now: datetime,
) -> list[PlannedPush]:
    # Serialise decisions per customer: two workers handling two gateways of the same
    # store must not both greet the same visit (SQLite serialises writers anyway).
    locked = session.exec(
        select(Customer.id).where(col(Customer.id) == customer_id).with_for_update()
    ).first()
    if locked is None:
        return []
    if not has_consent(session, customer_id=customer_id, channels=REQUIRED_CONSENT):
        RECOGNITIONS.labels(outcome="no_consent").inc()
        return []
    devices = active_push_devices(session, customer_id=customer_id)
    if not devices:
        RECOGNITIONS.labels(outcome="no_device").inc()
        return []
    visit_start, visit_end = _visit_span(session, customer_id=customer_id, event=event)
    if sent_during(
        session, customer_id=customer_id, rule=RULE, store=event.store,
        start=visit_start, end=visit_end,
    ):
        RECOGNITIONS.labels(outcome="already_greeted").inc()
        return []
    title = settings.title.replace("{store}", event.store)
    body = settings.body.replace("{store}", event.store)
    visit_ms = int(visit_start.timestamp() * 1000)
    planned: list[PlannedPush] = []
    for device in devices:
        assert device.id is not None
        assert device.token is not None
        key = f"{RULE}:{event.tenant}:{customer_id}:{event.store}:{visit_ms}:{device.id}"
        message_id = claim_message(
            session, tenant=event.tenant, customer_id=customer_id, device_id=device.id,
            channel=MessageChannel.PUSH, rule=RULE, idempotency_key=key, title=title, body=body,
            now=now, store=event.store, visit_start=visit_start,
        )
        if message_id is None:
            continue
        push = PushMessage(
            token=device.token, title=title, body=body, idempotency_key=key,
            deep_link=settings.deep_link,
            data={"message_id": str(message_id), "rule": RULE, "store": event.store},
        )
        planned.append(PlannedPush(message_id=message_id, device_id=device.id, message=push))
    RECOGNITIONS.labels(outcome="planned" if planned else "already_greeted").inc()
    return planned


def _visit_span(
    session: Session, *, customer_id: int, event: PresenceEvent
) -> tuple[datetime, datetime]:
    """The store visit (merged across gateways and zones) that `event` belongs to."""
    visits = store_visits(
        session, tenant=event.tenant, store=event.store,
        since=event.first_seen - VISIT_LOOKBACK, until=event.last_seen + VISIT_LOOKBACK,
        by_zone=False, pseudonyms=customer_pseudonyms(session, customer_id=customer_id),
    )
    for visit in visits:
        if visit.start <= event.first_seen <= visit.end:
            return visit.start, visit.end
    return event.first_seen, event.last_seen


def deliver_pushes(
    engine: Engine,
    *,
    sender: PushSender,
    planned: Sequence[PlannedPush],
    now: Callable[[], datetime],
) -> list[SendResult]:
    """Send claimed pushes and record each outcome; dead tokens are deactivated."""
    if not planned:
        return []
    try:
        results = sender.send([item.message for item in planned])
    except Exception as error:  # a sender must not raise, but one broken provider must not
        log.exception("push sender failed for %d messages", len(planned))  # stop the worker
        results = [
            SendResult(token=item.message.token, ok=False, error_code=type(error).__name__)
            for item in planned
        ]
    if len(results) != len(planned):
        log.error("push sender returned %d results for %d messages", len(results), len(planned))
        results = [*results, *[
            SendResult(token=item.message.token, ok=False, error_code="no_result")
            for item in planned[len(results):]
        ]][: len(planned)]
    with session_scope(engine) as session:
        for item, result in zip(planned, results, strict=True):
            record_outcome(
                session, message_id=item.message_id, ok=result.ok,
                provider_message_id=result.provider_message_id, error_code=result.error_code,
                now=now(),
            )
            if not result.ok and result.permanent:
                deactivate_device(
                    session, device_id=item.device_id,
                    reason=f"push provider: {result.error_code or 'permanent error'}", now=now(),
                )
            MESSAGES_SENT.labels(channel="push", outcome="sent" if result.ok else "failed").inc()
        session.commit()
    return results


def resume_pending(
    engine: Engine,
    *,
    sender: PushSender,
    settings: RecognitionSettings,
    now: Callable[[], datetime],
    grace: timedelta,
) -> int:
    """Send the pushes a worker decided but did not live to send; returns how many.

    A message counts as abandoned once it has been pending for `grace` (a live worker
    sends within seconds). Exactly one worker wins each retry (a conditional update), and
    a retried push carries the same idempotency key, from which the FCM sender derives the
    notification's collapse id: should the first attempt have reached the phone after
    all, the retry replaces it on screen instead of showing twice.
    """
    current = now()
    planned: list[PlannedPush] = []
    with session_scope(engine) as session:
        for row in stale_pending(session, older_than=current - grace):
            assert row.id is not None
            if row.channel != MessageChannel.PUSH:
                continue  # other channels resume their own messages
            reason = _abandon_reason(session, row=row, now=current)
            if reason is not None:
                give_up(session, message_id=row.id, reason=reason)
                MESSAGES_SENT.labels(channel="push", outcome=reason).inc()
                continue
            device = session.get(Device, row.device_id) if row.device_id is not None else None
            assert device is not None
            assert device.id is not None
            assert device.token is not None
            if not claim_attempt(
                session, message_id=row.id, seen_attempt_at=row.last_attempt_at, now=current
            ):
                continue
            planned.append(PlannedPush(message_id=row.id, device_id=device.id, message=PushMessage(
                token=device.token, title=row.title, body=row.body,
                idempotency_key=row.idempotency_key, deep_link=settings.deep_link,
                data={"message_id": str(row.id), "rule": row.rule, "store": row.store or ""},
            )))
        session.commit()
    if planned:
        log.warning("resending %d pushes left pending by a stopped worker", len(planned))
        deliver_pushes(engine, sender=sender, planned=planned, now=now)
    return len(planned)


def _abandon_reason(session: Session, *, row: Message, now: datetime) -> str | None:
    if row.created_at < now - PENDING_MAX_AGE:
        return "expired"
    if row.attempts >= MAX_ATTEMPTS:
        return "abandoned"
    device = session.get(Device, row.device_id) if row.device_id is not None else None
    if device is None or not device.active or device.token is None:
        return "no_device"
    channels = REQUIRED_CONSENT if row.rule == RULE else (ConsentChannel.PUSH,)
    if not has_consent(session, customer_id=row.customer_id, channels=channels):
        return "no_consent"
    return None
