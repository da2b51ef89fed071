"""Recording decided messages under their idempotency key, and their outcome."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table, update
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
            attempts=1, last_attempt_at=now,
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


def stale_pending(
    session: Session, *, older_than: datetime, limit: int = 500
) -> Sequence[Message]:
    """Messages still pending whose last attempt is older than `older_than`: a worker
    decided them and died before recording the outcome. Only the claim-then-send rows
    (`claim_message`) are meant: messages of the send queue (`next_attempt_at` set) are
    resumed by the delivery worker's own lease."""
    query = (
        select(Message)
        .where(
            col(Message.status) == MessageStatus.PENDING.value,
            col(Message.last_attempt_at) < older_than,
            col(Message.next_attempt_at).is_(None),
        )
        .order_by(col(Message.id)).limit(limit)
    )
    return session.exec(query).all()


def claim_attempt(
    session: Session, *, message_id: int, seen_attempt_at: datetime | None, now: datetime
) -> bool:
    """Take the next attempt of a pending message; False if another worker took it first
    (the conditional update succeeds for exactly one of them)."""
    statement = (
        update(MESSAGE_TABLE)
        .where(
            MESSAGE_TABLE.c.id == message_id,
            MESSAGE_TABLE.c.status == MessageStatus.PENDING.value,
            MESSAGE_TABLE.c.last_attempt_at == seen_attempt_at,
        )
        .values(attempts=MESSAGE_TABLE.c.attempts + 1, last_attempt_at=now)
    )
    return session.connection().execute(statement).rowcount == 1


def give_up(session: Session, *, message_id: int, reason: str) -> None:
    session.connection().execute(
        update(MESSAGE_TABLE)
        .where(MESSAGE_TABLE.c.id == message_id,
               MESSAGE_TABLE.c.status == MessageStatus.PENDING.value)
        .values(status=MessageStatus.FAILED.value, error_code=reason[:64])
    )
