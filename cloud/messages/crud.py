"""Recording decided messages under their idempotency key, and their outcome."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table
from sqlmodel import Session, SQLModel, col, select

from cloud.messages.models import Message, MessageChannel, MessageStatus
from cloud.presence.store import dialect_insert

MESSAGE_TABLE: Table = SQLModel.metadata.tables[Message.__tablename__]


def claim_message(
    session: Session,
    *,
    tenant: str,
    customer_id: int,
    device_id: int | None,
    channel: MessageChannel,
    rule: str,
    idempotency_key: str,
    title: str,
    body: str,
    now: datetime,
    store: str | None = None,
    visit_start: datetime | None = None,
) -> int | None:
    """Insert a pending message; return its id, or None if the key was already taken
    (the trigger was replayed: the earlier decision stands and nothing is sent again)."""
    statement = (
        dialect_insert(session, MESSAGE_TABLE)
        .values(
            tenant=tenant, customer_id=customer_id, device_id=device_id, channel=channel.value,
            rule=rule, store=store, visit_start=visit_start, idempotency_key=idempotency_key,
            status=MessageStatus.PENDING.value, title=title, body=body, created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(MESSAGE_TABLE.c.id)
    )
    row = session.connection().execute(statement).first()
    return None if row is None else int(row[0])


def record_outcome(
    session: Session,
    *,
    message_id: int,
    ok: bool,
    provider_message_id: str | None,
    error_code: str | None,
    now: datetime,
) -> None:
    message = session.get(Message, message_id)
    if message is None:  # erased meanwhile: nothing to record against
        return
    message.status = MessageStatus.SENT if ok else MessageStatus.FAILED
    message.provider_message_id = provider_message_id
    message.error_code = None if ok else (error_code or "unknown")[:64]
    message.sent_at = now if ok else None
    session.add(message)


def messages_for_customer(
    session: Session, *, customer_id: int, limit: int = 100
) -> Sequence[Message]:
    query = (
        select(Message).where(Message.customer_id == customer_id)
        .order_by(col(Message.created_at).desc(), col(Message.id).desc()).limit(limit)
    )
    return session.exec(query).all()


def sent_during(
    session: Session,
    *,
    customer_id: int,
    rule: str,
    store: str,
    start: datetime,
    end: datetime,
) -> bool:
    """Whether `rule` already messaged this customer for a visit starting in [start, end]."""
    query = select(Message.id).where(
        Message.customer_id == customer_id,
        Message.rule == rule,
        Message.store == store,
        col(Message.visit_start) >= start,
        col(Message.visit_start) <= end,
    )
    return session.exec(query.limit(1)).first() is not None
