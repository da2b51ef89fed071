"""Reading messages. Writing them is the send queue's (`cloud.messages.queue`): it decides
under an idempotency key, and its worker records every outcome."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlmodel import Session, SQLModel, col, select

from cloud.messages.models import Message

MESSAGE_TABLE: Table = SQLModel.metadata.tables[Message.__tablename__]


def messages_for_customer(
    session: Session, *, customer_id: int, limit: int = 100
) -> Sequence[Message]:
    query = (
        select(Message).where(Message.customer_id == customer_id)
        .order_by(col(Message.created_at).desc(), col(Message.id).desc()).limit(limit)
    )
    return session.exec(query).all()
