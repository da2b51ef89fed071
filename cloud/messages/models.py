"""Every message the orchestrator decided to send: the durable send queue, with its outcome.

The row is written (pending) in the same transaction as the decision, under a unique
idempotency key, before anything is sent: a replayed trigger finds the key taken and
sends nothing, so a message is decided at most once. The delivery worker
(`cloud.messages.queue`) then claims due rows, sends them, and records every attempt in
`message_attempt`; opens, clicks and conversions are stamped on the row by tracking.

Lifecycle: held (waiting for `not_before`, quiet hours) -> pending (due; also while a
worker holds it, `next_attempt_at` then being the end of its lease) -> sent (accepted by
the provider) -> delivered (a receipt says it reached the device: SMS receipts, web push
services' 201); or failed (permanent error, no address), suppressed (consent withdrawn
before the send), expired (`expires_at` passed before it could be sent).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict
from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlmodel import Field, SQLModel

from cloud.db import UtcDateTime
from cloud.examples import CUSTOMER_ID, example


class MessageStatus(StrEnum):
    PENDING = "pending"
    HELD = "held"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"


#: Statuses of messages still waiting to be sent.
WAITING_STATUSES = frozenset({MessageStatus.PENDING, MessageStatus.HELD})


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (
        Index("ix_message_pending", "status", "last_attempt_at"),
        Index("ix_message_due", "status", "next_attempt_at"),
        Index("ix_message_funnel", "tenant", "created_at"),
        Index("ix_message_provider_id", "provider_message_id"),
        UniqueConstraint("tracking_token", name="uq_message_tracking_token"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    customer_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    device_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("device.id", ondelete="SET NULL"), nullable=True),
    )
    #: The delivery channel's name (`cloud.channels`).
    channel: str = Field(sa_type=String(16))
    rule: str = Field(max_length=64, description="what decided the send (rule or scenario step)")
    #: A request for consent itself (the double opt-in email and its reminders), not
    #: marketing: it needs no marketing consent, counts towards no frequency cap, carries
    #: no offer, is credited with no order, and the funnel shows it apart.
    transactional: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    #: A store visit or a geofence led to it: sent only with the customer's consent to
    #: location-based marketing, as of sending.
    location_based: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    #: For a transactional message: when the consent request it belongs to began (its
    #: journey's start). A "no" given since then stops it (`cloud.customers.consent`).
    consent_requested_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    store: str | None = Field(default=None, max_length=64)
    idempotency_key: str = Field(max_length=255, unique=True)
    status: MessageStatus = Field(sa_type=String(16))
    #: A readable summary (push title, email subject); the full parts are in `content`.
    title: str = Field(max_length=200)
    body: str = Field(sa_type=Text)
    #: The rendered parts as sent, and the links of an email (see cloud.messages.content).
    content: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    provider_message_id: str | None = Field(default=None, max_length=255)
    error_code: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    #: Earliest send (quiet hours hold a message until then; nothing is dropped).
    not_before: datetime | None = Field(default=None, sa_type=UtcDateTime)
    #: When a worker may next take the message: its due time, a retry's backoff, or the
    #: end of the lease of the worker sending it. Null for rows the queue does not own.
    next_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    scenario: str | None = Field(default=None, max_length=64)
    step: str | None = Field(default=None, max_length=64)
    journey_id: int | None = None
    variant: str | None = Field(default=None, max_length=32)
    offer_id: int | None = None
    coupon_id: int | None = Field(default=None, index=True)
    product_sku: str | None = Field(default=None, max_length=128)
    product_category: str | None = Field(default=None, max_length=128)
    #: Where a click on the tracked link (/c/<token>) leads.
    target_url: str | None = Field(default=None, sa_type=Text)
    tracking_token: str | None = Field(default=None, max_length=32)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    clicked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    converted_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    conversion_order_id: str | None = Field(default=None, max_length=128)
    #: When the order that converted it was cancelled or refunded in full: the message
    #: no longer counts as converted (`converted_at` and the order stay, for the record).
    conversion_reversed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Reason(SQLModel):
    """Why a message is held, suppressed, expired, failed or still waiting
    (`cloud.messages.reasons`)."""

    code: str = Field(description="machine-readable: quiet_hours, no_consent, "
                      "no_location_consent, refused, expired, no_address, NOT_CONFIGURED, "
                      "or the provider's error code")
    text: str = Field(description="the same, as a sentence")


class MessagePublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": 31337, "customer_id": CUSTOMER_ID, "device_id": 88, "channel": "push",
         "rule": "cart-reminder", "store": None, "status": "sent",
         "title": "Juan, your cart is waiting",
         "body": "15% off Washing machine 8 kg until tomorrow",
         "provider_message_id": "projects/acme-app/messages/0:1765100100", "error_code": None,
         "created_at": "2026-12-07T10:23:00Z", "sent_at": "2026-12-07T10:23:01Z",
         "opened_at": None, "attempts": 1, "scenario": "cart-reminder", "step": "remind",
         "variant": "a"},
    ))

    id: int
    customer_id: str = Field(description="the customer's public id")
    device_id: int | None
    channel: str
    rule: str
    store: str | None
    status: MessageStatus
    transactional: bool = False
    title: str
    body: str
    provider_message_id: str | None
    error_code: str | None
    created_at: datetime
    sent_at: datetime | None
    opened_at: datetime | None
    attempts: int
    not_before: datetime | None = None
    next_attempt_at: datetime | None = None
    expires_at: datetime | None = None
    scenario: str | None = None
    step: str | None = None
    variant: str | None = None
    offer_id: int | None = None
    coupon_id: int | None = None
    delivered_at: datetime | None = None
    clicked_at: datetime | None = None
    converted_at: datetime | None = None
    conversion_order_id: str | None = None
    conversion_reversed_at: datetime | None = Field(
        default=None, description="when the converting order was cancelled or refunded in "
        "full: the message no longer counts as converted")
    reason: Reason | None = Field(
        default=None, description="why it is held, suppressed, expired, failed or still "
        "waiting; null once it went out")


class AttemptOutcome(StrEnum):
    """What one provider call did for one address."""

    SENT = "sent"
    #: May succeed later: retried after a backoff (Retry-After honoured).
    TRANSIENT = "transient"
    #: Never deliverable to this address (bad content, refused); not retried.
    PERMANENT = "permanent"
    #: The address is gone for good (uninstalled app, expired subscription): deactivated.
    DEAD_ADDRESS = "dead_address"
    #: Configuration or credentials (ours, not the message's): retried after a long pause.
    CONFIGURATION = "configuration"


class MessageAttempt(SQLModel, table=True):
    """One provider call for one message and one address: the delivery audit trail."""

    __tablename__ = "message_attempt"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("message.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    device_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("device.id", ondelete="SET NULL"), nullable=True),
    )
    attempt: int = Field(description="the message's attempt number this call belonged to")
    attempted_at: datetime = Field(sa_type=UtcDateTime)
    provider: str = Field(max_length=16)
    outcome: AttemptOutcome = Field(sa_type=String(16))
    #: The provider's answer in its own terms (FCM status, HTTP status, SMTP reply class).
    error_code: str | None = Field(default=None, max_length=64)
    provider_message_id: str | None = Field(default=None, max_length=255)
    retry_after_s: float | None = None
    latency_ms: int


class MessageAttemptPublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": 5001, "message_id": 31337, "device_id": 88, "attempt": 1,
         "attempted_at": "2026-12-07T10:23:01Z", "provider": "fcm", "outcome": "sent",
         "error_code": None, "provider_message_id": "projects/acme-app/messages/0:1765100100",
         "retry_after_s": None, "latency_ms": 142},
    ))

    id: int
    message_id: int
    device_id: int | None
    attempt: int
    attempted_at: datetime
    provider: str
    outcome: AttemptOutcome
    error_code: str | None
    provider_message_id: str | None
    retry_after_s: float | None
    latency_ms: int
