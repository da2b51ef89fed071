"""After sending: every attempt recorded, dead addresses forgotten, each message settled.

Every provider call is an attempt on the message's record, the retries a sender made
inside one send included (`SendResult.history()`): they share the claim's attempt number,
in the order they were made, each with its own outcome and, where the sender measured it,
its own time on the wire (else the whole call's).

A message reached on any of its addresses is sent (the customer has it; the other
devices are not tried again), or delivered when its channel's acceptance is delivery
(web push), or sent and waiting for the provider's receipt (SMS: a receipt that came
before this record is applied now). One that may still work on some address is tried
again later: transient errors back off exponentially with jitter, never sooner than
Retry-After, configuration errors wait longer (`cloud.leases.retry_at`), and a message is
given up after `MAX_ATTEMPTS`. Anything else fails for good. Messages that were not sent
at all (expired, suppressed, no address, channel not configured) are settled here too,
in the same transaction.

Every outcome is written only if the worker's claim still holds (`cloud.messages.queue`),
and tallied for the metrics once the transaction commits.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, SQLModel

from cloud.bulk import insert_rows
from cloud.channels import ReceiptChannel, SendResult, UnknownChannelError, adapter_for
from cloud.customers.crud import deactivate_device
from cloud.delivery.receipts import apply_stored_receipt
from cloud.leases import retry_at
from cloud.messages.models import AttemptOutcome, Message, MessageAttempt, MessageStatus
from cloud.messages.queue import (
    MAX_ATTEMPTS,
    Accepted,
    Claim,
    mark_final,
    mark_retry,
    mark_sent,
    mark_sent_many,
)

log = logging.getLogger(__name__)

ATTEMPT_TABLE = SQLModel.metadata.tables[MessageAttempt.__tablename__]


@dataclass(frozen=True, slots=True)
class Item:
    """One provider call's worth for one address of one claimed message."""

    claim: Claim
    channel: str
    tenant: str
    device_id: int | None
    payload: Any


@dataclass(frozen=True, slots=True)
class Sent:
    item: Item
    result: SendResult
    latency_ms: int


def classify(result: SendResult) -> AttemptOutcome:
    if result.ok:
        return AttemptOutcome.SENT
    if result.address_dead:
        return AttemptOutcome.DEAD_ADDRESS
    if result.permanent:
        return AttemptOutcome.PERMANENT
    if result.transient:
        return AttemptOutcome.TRANSIENT
    return AttemptOutcome.CONFIGURATION


def provider_of(channel: str) -> str:
    """The provider recorded on a channel's attempts (the channel's name when nobody
    registered it any more)."""
    try:
        return adapter_for(channel).provider
    except UnknownChannelError:
        return channel[:16]


class Outcomes:
    """Writes one round's outcomes in its record transaction; `tally(channel, outcome)`
    hears each, to be counted when the transaction commits."""

    def __init__(
        self, session: Session, *, now: datetime, rng: random.Random,
        tally: Callable[[str, str], None],
    ) -> None:
        self._session, self._now, self._rng, self._tally = session, now, rng, tally

    def final(
        self, claim: Claim, message: Message, status: MessageStatus, code: str, *,
        outcome: str | None = None,
    ) -> None:
        """Failed, suppressed or expired without being sent; never retried."""
        mark_final(self._session, claim=claim, status=status, error_code=code)
        self._tally(message.channel, outcome or status.value)

    def not_configured(self, claim: Claim, message: Message, code: str) -> None:
        """The channel has no sender here: an attempt on record, and a retry after a
        long pause (an operator has to act)."""
        self._session.add(MessageAttempt(
            message_id=claim.message_id, attempt=claim.attempt, attempted_at=self._now,
            provider=provider_of(message.channel), outcome=AttemptOutcome.CONFIGURATION,
            error_code=code, latency_ms=0,
        ))
        self._retry_or_fail(claim, message, code=code, retry_after_s=None, configuration=True)
        log.warning("%s messages cannot be sent: %s", message.channel, code)

    def sent(self, sent: Sequence[Sent], claimed: Mapping[Claim, Message]) -> None:
        """Every attempt, dead addresses deactivated, each message's outcome (`claimed`
        as read when claimed: a claim that no longer holds changes nothing)."""
        session, now = self._session, self._now
        by_claim: dict[Claim, list[Sent]] = {}
        attempts: list[dict[str, object]] = []
        for entry in sent:
            by_claim.setdefault(entry.item.claim, []).append(entry)
            provider = provider_of(entry.item.channel)
            # Every provider call of the send, the retries inside it included.
            for tried in entry.result.history():
                attempts.append({
                    "message_id": entry.item.claim.message_id,
                    "device_id": entry.item.device_id, "attempt": entry.item.claim.attempt,
                    "attempted_at": now, "provider": provider,
                    "outcome": classify(tried).value,
                    "error_code": (tried.error_code or None) and tried.error_code[:64],
                    "provider_message_id": tried.provider_message_id,
                    "retry_after_s": tried.retry_after_s,
                    "latency_ms": entry.latency_ms if tried.latency_ms is None
                    else tried.latency_ms,
                })
            outcome = classify(entry.result)
            if outcome is AttemptOutcome.DEAD_ADDRESS and entry.item.device_id is not None:
                deactivate_device(
                    session, device_id=entry.item.device_id,
                    reason=f"{provider}: {entry.result.error_code}", now=now,
                )
        insert_rows(session.connection(), ATTEMPT_TABLE, attempts)
        reached: list[Accepted] = []
        for claim, entries in by_claim.items():
            accepted = self._settle(claim, claimed[claim], entries)
            if accepted is not None:
                reached.append(accepted)
        held = mark_sent_many(session, accepted=reached, now=now)
        if held < len(reached):
            log.warning("%d sent messages were claimed by another worker meanwhile",
                        len(reached) - held)

    def _settle(
        self, claim: Claim, message: Message, entries: Sequence[Sent]
    ) -> Accepted | None:
        """Reached on any address: sent, returned to be marked with the round's others
        (or marked now when a receipt may be waiting for it). Else retried if any address
        may still work, else failed."""
        results = [entry.result for entry in entries]
        accepted = [result for result in results if result.ok]
        if accepted:
            return self._accepted(claim, message, accepted[0].provider_message_id)
        outcomes = [classify(result) for result in results]
        retryable = [
            result for result, outcome in zip(results, outcomes, strict=True)
            if outcome in (AttemptOutcome.TRANSIENT, AttemptOutcome.CONFIGURATION)
        ]
        if retryable:
            hint = max((r.retry_after_s or 0.0 for r in retryable), default=0.0) or None
            self._retry_or_fail(
                claim, message, code=retryable[0].error_code or "UNKNOWN",
                retry_after_s=hint,
                configuration=all(classify(r) is AttemptOutcome.CONFIGURATION for r in retryable),
            )
            return None
        code = results[0].error_code or "UNKNOWN"
        mark_final(self._session, claim=claim, status=MessageStatus.FAILED, error_code=code)
        self._tally(message.channel, "failed")
        return None

    def _accepted(
        self, claim: Claim, message: Message, provider_id: str | None
    ) -> Accepted | None:
        self._tally(message.channel, "sent")
        adapter = adapter_for(message.channel)
        if isinstance(adapter, ReceiptChannel) and provider_id:
            # A receipt may have come before this record: marked now, so it applies.
            if mark_sent(self._session, claim=claim, provider_message_id=provider_id,
                         delivered=False, now=self._now):
                apply_stored_receipt(self._session, channel=message.channel,
                                     provider_message_id=provider_id, now=self._now)
            return None
        return Accepted(claim, provider_id, delivered=adapter.acceptance_is_delivery)

    def _retry_or_fail(
        self, claim: Claim, message: Message, *, code: str, retry_after_s: float | None,
        configuration: bool,
    ) -> None:
        if claim.attempt >= MAX_ATTEMPTS:
            mark_final(self._session, claim=claim, status=MessageStatus.FAILED,
                       error_code=f"gave_up:{code}")
            self._tally(message.channel, "failed")
            return
        mark_retry(
            self._session, claim=claim, error_code=code, expires_at=message.expires_at,
            next_attempt_at=retry_at(
                attempt=claim.attempt, now=self._now, retry_after_s=retry_after_s,
                configuration=configuration, rng=self._rng,
            ),
        )
        self._tally(message.channel, "retry")
