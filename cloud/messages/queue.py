"""The durable send queue: decided messages wait in the `message` table until sent.

The scenario engine queues a message with `enqueue` in the transaction of its decision;
the delivery worker (`cloud.delivery.worker.DeliveryWorker`) takes due messages with the
functions below. Nothing of the queue lives in memory: a provider outage backs work up
in the table, and a worker that restarts (or another one) carries on where it was.

How a message is never sent twice:
- `enqueue` inserts under the unique idempotency key; a replayed decision inserts nothing.
- `claim_due` takes due rows with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite has one
  writer at a time) in a single UPDATE that also moves `next_attempt_at` to the end of a
  lease and counts the attempt; the claim commits before anything is sent, so another
  worker sees the row as not due until the lease ends.
- every outcome is written with a conditional UPDATE on (status pending, attempt number):
  a worker whose lease ran out cannot overwrite the outcome of the one that took over.
- a worker killed between sending and recording leaves the row pending; after the lease
  it is sent again under the same idempotency key, from which FCM's collapse id (Android
  tag, APNs collapse id), the Web Push Topic and the email Message-ID are derived: the
  device or mailbox replaces the first copy instead of showing two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, update
from sqlmodel import Session, col

from cloud.bulk import insert_rows
from cloud.db import UtcDateTime
from cloud.leases import settle_claim, take, take_oldest_due
from cloud.messages.content import channel_matches, content_json, summary
from cloud.messages.crud import MESSAGE_TABLE
from cloud.messages.models import Message, MessageStatus
from cloud.messages.tokens import TOKEN_RE
from cloud.templates.rendering import Rendered

#: How long a claimed message is left to the worker that claimed it. Longer than any send
#: round can take (senders retry in-call for up to about a minute: four tries with
#: 10-second timeouts and a Retry-After of up to 30 s), so a live worker never loses a
#: message to another; short enough that a killed worker's messages go out minutes later.
LEASE = timedelta(minutes=5)
#: Attempts before a message is given up; with the backoff above about a day of trying.
MAX_ATTEMPTS = 30
#: Keys the delivery layer puts in a push's data itself.
RESERVED_DATA_KEYS = frozenset({"message_id", "open_url", "dedupe_key", "deep_link"})
_WAITING = [MessageStatus.PENDING.value, MessageStatus.HELD.value]
#: What makes a message an offer: a transactional message may carry none of it.
_MARKETING_FIELDS = ("offer_id", "coupon_id", "product_sku", "product_category")


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One decided message, rendered, with what tracking and analytics need to know."""

    tenant: str
    customer_id: int
    #: A registered channel's name (`cloud.channels`).
    channel: str
    content: Rendered
    idempotency_key: str
    #: What decided it: the scenario step ("<scenario>:<step>") or a rule's name.
    rule: str
    #: A request for consent itself (the double opt-in email), not marketing: the worker
    #: sends it without marketing consent (`cloud.customers.consent`), caps do not count
    #: it, and it may carry no offer, coupon or product.
    transactional: bool = False
    #: A store visit or a geofence led to it: it also needs consent to location-based
    #: marketing when it is sent.
    location_based: bool = False
    #: For a transactional message: when its consent request began (the journey's start);
    #: a "no" given since then stops it at send time. None: when it was queued.
    consent_requested_at: datetime | None = None
    #: Earliest send: quiet hours move it to their end (the message is held, not dropped).
    not_before: datetime
    #: After this it is not worth sending any more (the coupon ran out, the visit ended).
    expires_at: datetime | None = None
    tracking_token: str
    #: Where the tracked link (`tracked_link(base, tracking_token)`) leads.
    target_url: str | None = None
    scenario: str | None = None
    step: str | None = None
    journey_id: int | None = None
    variant: str | None = None
    offer_id: int | None = None
    coupon_id: int | None = None
    product_sku: str | None = None
    product_category: str | None = None
    store: str | None = None
    #: Extra key/values for the app or service worker (push channels only).
    data: Mapping[str, str] = field(default_factory=dict)


def enqueue(session: Session, *, outgoing: Outgoing, now: datetime) -> int | None:
    """Queue a message in the caller's transaction; its id, or None when the idempotency
    key was taken (the decision was made before: nothing more is sent).

    Raises ValueError for a message that could never be sent (content of another channel,
    a malformed token, reserved data keys, naive times, a transactional message carrying
    an offer).
    """
    batch = MessageBatch()
    pending = batch.add(outgoing, now=now)
    batch.write(session)
    return pending.id


@dataclass(slots=True)
class PendingMessage:
    """A message added to a `MessageBatch`: `id` is set when the batch is written, and
    stays None if its idempotency key was taken."""

    idempotency_key: str
    customer_id: int
    id: int | None = None


class MessageBatch:
    """Messages decided in one transaction, inserted together (one statement, not one per
    message) when `write` is called, in the same transaction."""

    def __init__(self) -> None:
        self._rows: list[dict[str, object]] = []
        self._pending: list[PendingMessage] = []
        #: Asked for every trigger and step of a batch: a set, not a scan of `_pending`.
        self._customers: set[int] = set()

    def add(self, outgoing: Outgoing, *, now: datetime) -> PendingMessage:
        """Check and keep one message (ValueError as for `enqueue`)."""
        _check(outgoing)
        self._rows.append(_message_row(outgoing, now=now))
        pending = PendingMessage(outgoing.idempotency_key, outgoing.customer_id)
        self._pending.append(pending)
        self._customers.add(outgoing.customer_id)
        return pending

    def holds_for(self, customer_id: int) -> bool:
        return customer_id in self._customers

    def write(self, session: Session) -> list[PendingMessage]:
        """Insert what was added; returns those messages, with ids where stored. A key
        taken before (or twice in the batch) stores nothing: its id stays None."""
        rows, pending = self._rows, self._pending
        self._rows, self._pending = [], []
        self._customers.clear()
        stored = dict(insert_rows(
            session.connection(), MESSAGE_TABLE, rows, skip_conflicts_on=["idempotency_key"],
            returning=[MESSAGE_TABLE.c.idempotency_key, MESSAGE_TABLE.c.id],
        ))
        for message in pending:
            found = stored.pop(message.idempotency_key, None)
            message.id = None if found is None else int(found)
        return pending


def _message_row(outgoing: Outgoing, *, now: datetime) -> dict[str, object]:
    title, body = summary(outgoing.content)
    status = MessageStatus.HELD if outgoing.not_before > now else MessageStatus.PENDING
    return {
        "tenant": outgoing.tenant, "customer_id": outgoing.customer_id,
        "channel": outgoing.channel, "rule": outgoing.rule[:64],
        "store": outgoing.store, "transactional": outgoing.transactional,
        "location_based": outgoing.location_based,
        "consent_requested_at": outgoing.consent_requested_at,
        "idempotency_key": outgoing.idempotency_key, "status": status.value,
        "title": title[:200], "body": body,
        "content": content_json(outgoing.content, data=outgoing.data,
                                token=outgoing.tracking_token),
        "created_at": now, "not_before": outgoing.not_before,
        "next_attempt_at": outgoing.not_before, "expires_at": outgoing.expires_at,
        "scenario": outgoing.scenario, "step": outgoing.step,
        "journey_id": outgoing.journey_id, "variant": outgoing.variant,
        "offer_id": outgoing.offer_id, "coupon_id": outgoing.coupon_id,
        "product_sku": outgoing.product_sku, "product_category": outgoing.product_category,
        "target_url": outgoing.target_url, "tracking_token": outgoing.tracking_token,
        "attempts": 0,
    }


def _check(outgoing: Outgoing) -> None:
    if not channel_matches(outgoing.channel, outgoing.content):
        raise ValueError(
            f"{type(outgoing.content).__name__} cannot be sent on channel {outgoing.channel}"
        )
    if not TOKEN_RE.fullmatch(outgoing.tracking_token):
        raise ValueError("tracking_token must come from new_tracking_token()")
    if not outgoing.idempotency_key or len(outgoing.idempotency_key) > 255:
        raise ValueError("idempotency_key must be 1-255 characters")
    for moment in (outgoing.not_before, outgoing.expires_at, outgoing.consent_requested_at):
        if moment is not None and moment.tzinfo is None:
            raise ValueError(
                "not_before, expires_at and consent_requested_at must be timezone-aware"
            )
    clash = sorted(RESERVED_DATA_KEYS & set(outgoing.data))
    if clash:
        raise ValueError(f"data keys {clash} are reserved for the delivery layer")
    if outgoing.transactional:
        marketing = [name for name in _MARKETING_FIELDS if getattr(outgoing, name) is not None]
        if marketing:
            # Sent without marketing consent, it must not become marketing by the back door.
            raise ValueError(f"a transactional message carries no {', '.join(marketing)}")


@dataclass(frozen=True, slots=True, order=True)
class Claim:
    """A message this worker may send now: `attempt` is its attempt number."""

    message_id: int
    attempt: int


def expire_due(session: Session, *, now: datetime, limit: int = 1000) -> int:
    """Messages whose `expires_at` passed before they could be sent become expired (up to
    `limit` per call; rows another worker holds are skipped, so workers never wait on
    each other here either)."""
    lapsed = and_(
        MESSAGE_TABLE.c.status.in_(_WAITING),
        MESSAGE_TABLE.c.next_attempt_at <= now,
        MESSAGE_TABLE.c.expires_at <= now,
    )
    result = session.connection().execute(
        update(MESSAGE_TABLE)
        .where(take(session, MESSAGE_TABLE, where=lapsed, order_by=[], limit=limit),
               MESSAGE_TABLE.c.status.in_(_WAITING),
               MESSAGE_TABLE.c.next_attempt_at <= now)
        .values(status=MessageStatus.EXPIRED.value, error_code="expired")
        .returning(MESSAGE_TABLE.c.id)  # counted from the rows: SQLite reports no rowcount
    )
    return len(result.all())


def claim_due(
    session: Session, *, now: datetime, limit: int, lease: timedelta = LEASE
) -> dict[Claim, Message]:
    """Take up to `limit` due messages for this worker (oldest due first; see
    `cloud.leases.claim_rows`), each with its row as claimed: one statement claims and reads them.
    The caller commits before sending."""
    due = and_(
        MESSAGE_TABLE.c.status.in_(_WAITING),
        MESSAGE_TABLE.c.next_attempt_at <= now,
        MESSAGE_TABLE.c.not_before <= now,
    )
    claimed = session.scalars(
        update(Message)
        .where(take_oldest_due(session, MESSAGE_TABLE, due, limit), due)
        .values(status=MessageStatus.PENDING.value, attempts=col(Message.attempts) + 1,
                last_attempt_at=now, next_attempt_at=now + lease)
        .returning(Message),
        execution_options={"synchronize_session": False},
    ).all()
    return {
        Claim(message.id, message.attempts): message
        for message in sorted(claimed, key=lambda message: message.id or 0)
        if message.id is not None
    }


def _settle(session: Session, claim: Claim, **values: object) -> bool:
    return settle_claim(session, table=MESSAGE_TABLE, row_id=claim.message_id,
                        held_status=MessageStatus.PENDING.value, attempt=claim.attempt,
                        values=values)


def mark_sent(
    session: Session, *, claim: Claim, provider_message_id: str | None, delivered: bool,
    now: datetime,
) -> bool:
    """Sent (and, when the provider's acceptance is delivery, delivered)."""
    values: dict[str, object] = {
        "status": (MessageStatus.DELIVERED if delivered else MessageStatus.SENT).value,
        "sent_at": now, "provider_message_id": provider_message_id, "error_code": None,
    }
    if delivered:
        values["delivered_at"] = now
    return _settle(session, claim, **values)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A claim whose message the provider accepted."""

    claim: Claim
    provider_message_id: str | None
    #: The provider's acceptance is delivery (Web Push: the push service holds it).
    delivered: bool


#: `mark_sent` for many claims: one statement executed for each (the driver pipelines
#: them: one round trip for a round's messages, not one per message).
_MARK_SENT = (
    update(MESSAGE_TABLE)
    .where(
        MESSAGE_TABLE.c.id == bindparam("claimed_id"),
        MESSAGE_TABLE.c.status == MessageStatus.PENDING.value,
        MESSAGE_TABLE.c.attempts == bindparam("claimed_attempt"),
    )
    .values(
        status=bindparam("new_status"), sent_at=bindparam("sent"),
        provider_message_id=bindparam("provider_id"), error_code=None,
        delivered_at=func.coalesce(bindparam("delivered", type_=UtcDateTime),
                                   MESSAGE_TABLE.c.delivered_at),
    )
)


def mark_sent_many(session: Session, *, accepted: Sequence[Accepted], now: datetime) -> int:
    """`mark_sent` for each of `accepted`; returns how many claims still held (the others
    were taken over by another worker after their lease ran out)."""
    if not accepted:
        return 0
    result = session.connection().execute(_MARK_SENT, [
        {"claimed_id": item.claim.message_id, "claimed_attempt": item.claim.attempt,
         "new_status": (MessageStatus.DELIVERED if item.delivered else MessageStatus.SENT).value,
         "sent": now, "provider_id": item.provider_message_id,
         "delivered": now if item.delivered else None}
        for item in accepted
    ])
    return int(result.rowcount)


def mark_final(
    session: Session, *, claim: Claim, status: MessageStatus, error_code: str
) -> bool:
    """Failed, suppressed or expired: never retried."""
    return _settle(session, claim, status=status.value, error_code=error_code[:64])


def mark_retry(
    session: Session, *, claim: Claim, error_code: str, next_attempt_at: datetime,
    expires_at: datetime | None,
) -> bool:
    """Back to pending until `next_attempt_at` (or expiry, whichever is first)."""
    if expires_at is not None and next_attempt_at > expires_at:
        next_attempt_at = expires_at  # the expiry pass then marks it expired on time
    return _settle(
        session, claim, status=MessageStatus.PENDING.value, error_code=error_code[:64],
        next_attempt_at=next_attempt_at,
    )
