"""Every message the orchestrator decided to send, with its outcome.

The row is written (pending) in the same transaction as the decision, under a unique
idempotency key, before anything is sent: a replayed trigger finds the key taken and
sends nothing, so a message goes out at most once.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from cloud.db import UtcDateTime


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class MessageChannel(StrEnum):
    PUSH = "push"
    WEB_PUSH = "web_push"
    EMAIL = "email"
    SMS = "sms"


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (
        Index("ix_message_customer_rule", "customer_id", "rule", "store", "visit_start"),
        Index("ix_message_pending", "status", "last_attempt_at"),
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
    channel: MessageChannel = Field(sa_type=String(16))
    rule: str = Field(max_length=64, description="what decided the send (rule or scenario step)")
    store: str | None = Field(default=None, max_length=64)
    visit_start: datetime | None = Field(default=None, sa_type=UtcDateTime)
    idempotency_key: str = Field(max_length=255, unique=True)
    status: MessageStatus = Field(sa_type=String(16))
    title: str = Field(max_length=200)
    body: str = Field(sa_type=Text)
    provider_message_id: str | None = Field(default=None, max_length=255)
    error_code: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class MessagePublic(SQLModel):
    id: int
    customer_id: int
    device_id: int | None
    channel: MessageChannel
    rule: str
    store: str | None
    visit_start: datetime | None
    status: MessageStatus
    title: str
    body: str
    provider_message_id: str | None
    error_code: str | None
    created_at: datetime
    sent_at: datetime | None
    opened_at: datetime | None
    attempts: int
