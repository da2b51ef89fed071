"""SMS delivery receipts: the provider's word that a text reached (or missed) the phone.

A receipt can arrive before the worker has recorded the send it belongs to (providers
post within milliseconds of accepting a text, while the worker is still sending the
rest of its batch), so every receipt is kept under the provider's message id and
applied from both sides: by the webhook when the message is already known, and by the
worker when it records the send.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, update
from sqlmodel import Field, Session, SQLModel, col, select

from cloud.db import UtcDateTime
from cloud.delivery.sms import FINAL_STATUSES, DeliveryReceipt
from cloud.messages.models import Message, MessageChannel, MessageStatus
from cloud.presence.store import dialect_insert


class SmsReceipt(SQLModel, table=True):
    """The latest receipt per provider message id (a final status is never overwritten)."""

    __tablename__ = "sms_receipt"

    provider_message_id: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=16)
    error_code: str | None = Field(default=None, max_length=32)
    received_at: datetime = Field(sa_type=UtcDateTime)


RECEIPT_TABLE: Table = SQLModel.metadata.tables[SmsReceipt.__tablename__]
MESSAGE_TABLE: Table = SQLModel.metadata.tables[Message.__tablename__]


def store_receipt(session: Session, *, receipt: DeliveryReceipt, now: datetime) -> int | None:
    """Keep the receipt and apply it to its message if that is known; returns the
    message id it applied to."""
    session.connection().execute(
        dialect_insert(session, RECEIPT_TABLE)
        .values(
            provider_message_id=receipt.provider_message_id[:64], status=receipt.status[:16],
            error_code=(receipt.error_code or None) and receipt.error_code[:32], received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider_message_id"])
    )
    if receipt.final:
        # Later receipts replace earlier ones, but nothing replaces a final one.
        session.connection().execute(
            update(RECEIPT_TABLE)
            .where(
                RECEIPT_TABLE.c.provider_message_id == receipt.provider_message_id[:64],
                RECEIPT_TABLE.c.status.not_in(sorted(FINAL_STATUSES)),
            )
            .values(status=receipt.status, error_code=receipt.error_code, received_at=now)
        )
    return apply_stored_receipt(
        session, provider_message_id=receipt.provider_message_id, now=now
    )


def apply_stored_receipt(
    session: Session, *, provider_message_id: str, now: datetime
) -> int | None:
    """Apply the kept receipt for `provider_message_id` to its sent SMS, if both exist."""
    stored = session.get(SmsReceipt, provider_message_id[:64])
    if stored is None or stored.status not in FINAL_STATUSES:
        return None
    message_id = session.exec(
        select(Message.id).where(
            Message.provider_message_id == provider_message_id,
            Message.channel == MessageChannel.SMS,
        ).order_by(col(Message.id))
    ).first()
    if message_id is None:
        return None
    if stored.status == "delivered":
        values: dict[str, object] = {
            "status": MessageStatus.DELIVERED.value, "delivered_at": stored.received_at,
        }
    else:
        values = {
            "status": MessageStatus.FAILED.value,
            "error_code": f"{stored.status}:{stored.error_code or 'unknown'}"[:64],
        }
    session.connection().execute(
        update(MESSAGE_TABLE)
        .where(
            MESSAGE_TABLE.c.id == message_id,
            MESSAGE_TABLE.c.status == MessageStatus.SENT.value,
        )
        .values(**values)
    )
    return message_id
