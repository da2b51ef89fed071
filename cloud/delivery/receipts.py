"""Delivery receipts: a provider's later word that a message reached (or missed) the
phone, for channels whose providers send them (`cloud.channels.ReceiptChannel`: SMS).

A receipt can arrive before the worker has recorded the send it belongs to (providers
post within milliseconds of accepting a text, while the worker is still sending the
rest of its batch). A receipt for a known message is applied at once; one for a message
not known yet is kept under the provider's message id and applied by the worker, both
when it records the send and in a sweep every round (which also catches a receipt kept
by one transaction while the other was recording). Applied receipts are not kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, delete, update
from sqlmodel import Field, Session, SQLModel, col, select

from cloud.channels import DeliveryReceipt, ReceiptChannel, adapters
from cloud.channels.base import FINAL_RECEIPT_STATUSES
from cloud.db import UtcDateTime, dialect_insert
from cloud.messages.crud import MESSAGE_TABLE
from cloud.messages.models import Message, MessageStatus

#: Receipts applied per sweep; a backlog larger than this drains over a few rounds.
SWEEP_LIMIT = 500


class KeptReceipt(SQLModel, table=True):
    """A receipt that came before its message was recorded (a final status is never
    overwritten by a later, non-final one). The table keeps the name it had when SMS was
    the only channel with receipts."""

    __tablename__ = "sms_receipt"

    provider_message_id: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=16)
    error_code: str | None = Field(default=None, max_length=32)
    received_at: datetime = Field(sa_type=UtcDateTime)


RECEIPT_TABLE: Table = SQLModel.metadata.tables[KeptReceipt.__tablename__]


def _message_id(session: Session, channel: str, provider_message_id: str) -> int | None:
    return session.exec(
        select(Message.id).where(
            Message.provider_message_id == provider_message_id, Message.channel == channel,
        ).order_by(col(Message.id))
    ).first()


def _receipt_channels() -> list[str]:
    return [adapter.name for adapter in adapters() if isinstance(adapter, ReceiptChannel)]


def _apply(
    session: Session, *, message_id: int, status: str, error_code: str | None, at: datetime
) -> None:
    """A final status onto a sent text: delivered, or failed with the carrier's code."""
    if status == "delivered":
        values: dict[str, object] = {
            "status": MessageStatus.DELIVERED.value, "delivered_at": at,
        }
    else:
        values = {
            "status": MessageStatus.FAILED.value,
            "error_code": f"{status}:{error_code or 'unknown'}"[:64],
        }
    session.connection().execute(
        update(MESSAGE_TABLE)
        .where(
            MESSAGE_TABLE.c.id == message_id,
            MESSAGE_TABLE.c.status == MessageStatus.SENT.value,
        )
        .values(**values)
    )


def store_receipt(
    session: Session, *, channel: str, receipt: DeliveryReceipt, now: datetime
) -> int | None:
    """Apply the receipt to its message on `channel`, or keep it until the message is
    recorded; returns the message id it applied to."""
    sid = receipt.provider_message_id[:64]
    error_code = (receipt.error_code or None) and receipt.error_code[:32]
    message_id = _message_id(session, channel, receipt.provider_message_id)
    if message_id is not None:
        if receipt.final:
            _apply(session, message_id=message_id, status=receipt.status,
                   error_code=error_code, at=now)
        return message_id
    session.connection().execute(
        dialect_insert(session, RECEIPT_TABLE)
        .values(provider_message_id=sid, status=receipt.status[:16], error_code=error_code,
                received_at=now)
        .on_conflict_do_nothing(index_elements=["provider_message_id"])
    )
    if receipt.final:
        # Later receipts replace earlier ones, but nothing replaces a final one.
        session.connection().execute(
            update(RECEIPT_TABLE)
            .where(
                RECEIPT_TABLE.c.provider_message_id == sid,
                RECEIPT_TABLE.c.status.not_in(sorted(FINAL_RECEIPT_STATUSES)),
            )
            .values(status=receipt.status[:16], error_code=error_code, received_at=now)
        )
    return None


def apply_stored_receipt(
    session: Session, *, channel: str, provider_message_id: str, now: datetime
) -> int | None:
    """Apply (and forget) a kept final receipt for `provider_message_id`, if there is one
    and its message on `channel` is recorded; returns the message id."""
    stored = session.get(KeptReceipt, provider_message_id[:64])
    if stored is None or stored.status not in FINAL_RECEIPT_STATUSES:
        return None
    message_id = _message_id(session, channel, provider_message_id)
    if message_id is None:
        return None
    _apply(session, message_id=message_id, status=stored.status, error_code=stored.error_code,
           at=stored.received_at)
    session.connection().execute(delete(RECEIPT_TABLE).where(
        RECEIPT_TABLE.c.provider_message_id == stored.provider_message_id
    ))
    return message_id


def apply_kept_receipts(session: Session, *, now: datetime, limit: int = SWEEP_LIMIT) -> int:
    """Apply every kept final receipt whose message is now recorded; how many."""
    channels = _receipt_channels()
    if not channels:
        return 0
    found = session.exec(
        select(KeptReceipt.provider_message_id, Message.channel)
        .join(Message, col(Message.provider_message_id) == col(KeptReceipt.provider_message_id))
        .where(col(KeptReceipt.status).in_(sorted(FINAL_RECEIPT_STATUSES)),
               col(Message.channel).in_(channels))
        .limit(limit)
    ).all()
    return sum(
        apply_stored_receipt(session, channel=channel, provider_message_id=sid,
                             now=now) is not None
        for sid, channel in dict(found).items()
    )
