"""Opens, clicks and unsubscribes: stamped once on the message, each a scenario trigger.

The first open and the first click are what count (a customer opening a push three times
opened it once), and each becomes a trigger (`message.opened`, `message.clicked`) under a
key derived from the message, so scenarios can wait for them ("opened but not bought")
and a repeated report changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, select

from cloud.channels import adapter_for
from cloud.customers.crud import record_consent
from cloud.customers.models import ConsentCreate, Customer
from cloud.messages.models import Message
from cloud.messages.tokens import TOKEN_RE
from cloud.triggers import TriggerKind, record_trigger

MESSAGE_TABLE: Table = SQLModel.metadata.tables[Message.__tablename__]
#: Phones' and shops' clocks are off by this much at most (signed webhooks allow as much).
CLOCK_SKEW = timedelta(minutes=5)
#: The consent ledger's source for answers given through a message's unsubscribe link.
UNSUBSCRIBE_SOURCE = "unsubscribe-link"


def trigger_attributes(message: Message) -> dict[str, Any]:
    """What a scenario may filter a message.* trigger on."""
    return {
        "message_id": message.id, "scenario": message.scenario, "step": message.step,
        "offer_id": message.offer_id, "product_sku": message.product_sku,
        "product_category": message.product_category, "channel": str(message.channel),
    }


def message_by_token(session: Session, *, token: str) -> Message | None:
    if not TOKEN_RE.fullmatch(token):
        return None
    return session.exec(select(Message).where(Message.tracking_token == token)).first()


def _stamp_once(session: Session, *, message_id: int, column: str, at: datetime) -> bool:
    """Set `column` if still empty; True for the first stamp (a conditional update, so
    two simultaneous reports make one)."""
    result = session.connection().execute(
        update(MESSAGE_TABLE)
        .where(MESSAGE_TABLE.c.id == message_id, MESSAGE_TABLE.c[column].is_(None))
        .values({column: at})
    )
    return result.rowcount == 1


def _trigger(
    session: Session, *, message: Message, kind: TriggerKind, prefix: str, at: datetime,
    now: datetime, extra: Mapping[str, Any] | None = None,
) -> None:
    assert message.id is not None
    record_trigger(
        session, tenant=message.tenant, customer_id=message.customer_id, kind=kind,
        occurred_at=at, source_key=f"{prefix}:{message.id}", now=now,
        attributes={**trigger_attributes(message), **(extra or {})},
    )


def _plausible(at: datetime | None, message: Message, now: datetime) -> datetime:
    """A client's own time for an event, kept only if it could be true (not before the
    message existed, give or take clock skew; not in the future); otherwise the time the
    report arrived."""
    if at is None or at > now:
        return now
    return at if at >= message.created_at - CLOCK_SKEW else now


def record_open(
    session: Session, *, message: Message, now: datetime, opened_at: datetime | None = None
) -> bool:
    """The customer opened the message (push tapped, email pixel loaded); True for the
    first open. Records the message.opened trigger once."""
    assert message.id is not None
    at = _plausible(opened_at, message, now)
    first = _stamp_once(session, message_id=message.id, column="opened_at", at=at)
    if first:
        set_committed_value(message, "opened_at", at)
        _trigger(session, message=message, kind=TriggerKind.MESSAGE_OPENED, prefix="open",
                 at=at, now=now)
    return first


def record_open_by_id(
    session: Session, *, tenant: str, message_id: int, now: datetime,
    opened_at: datetime | None = None, customer_id: int | None = None,
) -> Message | None:
    """An open reported by the app or shop (API, webhook): the message if it is this
    tenant's (and this customer's, when given), else None."""
    message = session.get(Message, message_id)
    if message is None or message.tenant != tenant:
        return None
    if customer_id is not None and message.customer_id != customer_id:
        return None
    record_open(session, message=message, now=now, opened_at=opened_at)
    return message


def record_click(session: Session, *, message: Message, now: datetime) -> bool:
    """The customer followed a tracked link; True for the first click."""
    assert message.id is not None
    first = _stamp_once(session, message_id=message.id, column="clicked_at", at=now)
    if first:
        set_committed_value(message, "clicked_at", now)
        _trigger(session, message=message, kind=TriggerKind.MESSAGE_CLICKED, prefix="click",
                 at=now, now=now)
    return first


def record_unsubscribe(session: Session, *, message: Message, now: datetime) -> str:
    """Withdraw the consent for the channel `message` came on (a ledger entry); returns
    the consent kind withdrawn."""
    channel = adapter_for(message.channel).consent
    customer = session.get(Customer, message.customer_id)
    assert customer is not None  # the message row cascades with its customer
    record_consent(session, customer=customer, now=now, data=ConsentCreate(
        channel=channel, granted=False, source=UNSUBSCRIBE_SOURCE,
    ))
    return channel
