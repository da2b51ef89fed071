"""Which message an order is credited to.

A redeemed coupon is proof: the message that carried it converted. Without one, the
order goes to the customer's last touch: the message most recently sent, opened or
clicked within the attribution window before the order (last-touch attribution, what
shops expect from marketing tools). A message converts once; a second order after the
same touch credits nothing new. Transactional messages (requests for consent: the double
opt-in email) are not marketing and are never credited: a click on "confirm your
subscription" did not sell the washing machine.

An order cancelled or refunded in full sold nothing: the conversion it made is reversed
(`conversion_reversed_at`; the order and the time stay on the message, for the record),
and the message may then convert again, by a later order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, or_, select

from cloud.messages.models import Message
from cloud.tracking.events import trigger_attributes
from cloud.triggers import TriggerKind, record_trigger

MESSAGE_TABLE: Table = SQLModel.metadata.tables[Message.__tablename__]
#: Whether a message's conversion stands (made, and not reversed): what funnels and
#: conditions count as converted.
CONVERTED: ColumnElement[bool] = and_(
    col(Message.converted_at).is_not(None), col(Message.conversion_reversed_at).is_(None)
)
#: Long enough for a considered purchase (a washing machine), short enough that an order
#: a month later is not credited to a push the customer has forgotten.
ATTRIBUTION_WINDOW = timedelta(days=7)


def _touched_at(message: Message, until: datetime) -> datetime | None:
    """The message's last touch (sent, opened, clicked) at or before `until`."""
    moments = [
        moment for moment in (message.sent_at, message.opened_at, message.clicked_at)
        if moment is not None and moment <= until
    ]
    return max(moments, default=None)


def attribute_order(
    session: Session,
    *,
    tenant: str,
    customer_id: int,
    order_id: str,
    ordered_at: datetime,
    redeemed_coupon_ids: Sequence[int],
    now: datetime,
    window: timedelta = ATTRIBUTION_WINDOW,
) -> list[int]:
    """Mark the messages this order converts (in the order's transaction); their ids.

    Each conversion records a `message.converted` trigger with the order id.
    """
    converted: list[int] = []
    if redeemed_coupon_ids:
        carriers = session.exec(
            select(Message).where(
                Message.tenant == tenant, Message.customer_id == customer_id,
                col(Message.coupon_id).in_(list(redeemed_coupon_ids)),
                col(Message.sent_at).is_not(None),
            ).order_by(col(Message.id))
        ).all()
        for message in carriers:
            if _convert(session, message=message, order_id=order_id, at=ordered_at, now=now,
                        via="coupon"):
                converted.append(_id(message))
        if carriers:
            return converted
    since = ordered_at - window
    touched = session.exec(
        select(Message).where(
            Message.tenant == tenant, Message.customer_id == customer_id,
            col(Message.sent_at).is_not(None), col(Message.transactional).is_(False),
            or_(
                col(Message.sent_at).between(since, ordered_at),
                col(Message.opened_at).between(since, ordered_at),
                col(Message.clicked_at).between(since, ordered_at),
            ),
        )
    ).all()
    candidates = [
        (touch, _id(message), message) for message in touched
        if (touch := _touched_at(message, ordered_at)) is not None and touch >= since
    ]
    if not candidates:
        return converted
    _touch, _last_id, last = max(candidates, key=lambda candidate: candidate[:2])
    if _convert(session, message=last, order_id=order_id, at=ordered_at, now=now,
                via="last_touch"):
        converted.append(_id(last))
    return converted


def _id(message: Message) -> int:
    assert message.id is not None
    return message.id


def _convert(
    session: Session, *, message: Message, order_id: str, at: datetime, now: datetime, via: str
) -> bool:
    """Credit the order to the message, unless a conversion of it stands already."""
    table = MESSAGE_TABLE.c
    result = session.connection().execute(
        update(MESSAGE_TABLE)
        .where(table.id == _id(message),
               or_(table.converted_at.is_(None), table.conversion_reversed_at.is_not(None)))
        .values(converted_at=at, conversion_order_id=order_id[:128],
                conversion_reversed_at=None)
    )
    if result.rowcount != 1:
        return False
    set_committed_value(message, "converted_at", at)
    set_committed_value(message, "conversion_order_id", order_id[:128])
    set_committed_value(message, "conversion_reversed_at", None)
    record_trigger(
        session, tenant=message.tenant, customer_id=message.customer_id,
        kind=TriggerKind.MESSAGE_CONVERTED, occurred_at=at,
        # By order too: a message whose conversion was reversed may convert again.
        source_key=f"convert:{_id(message)}:{order_id}", now=now,
        attributes={**trigger_attributes(message), "order_id": order_id, "via": via},
    )
    return True


def reverse_conversions(
    session: Session, *, tenant: str, order_id: str, at: datetime
) -> list[int]:
    """The order was cancelled or refunded in full (at `at`): the messages it converted
    no longer count as converted. Returns their ids; a second call reverses nothing."""
    table = MESSAGE_TABLE.c
    reversed_ids = session.connection().execute(
        update(MESSAGE_TABLE)
        .where(table.tenant == tenant, table.conversion_order_id == order_id[:128],
               table.converted_at.is_not(None), table.conversion_reversed_at.is_(None))
        .values(conversion_reversed_at=at)
        .returning(table.id)
    ).scalars().all()
    for message_id in reversed_ids:
        message = session.identity_map.get(session.identity_key(Message, message_id))
        if message is not None:
            set_committed_value(message, "conversion_reversed_at", at)
    return sorted(int(message_id) for message_id in reversed_ids)
