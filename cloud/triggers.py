"""The engine's inbox: one row per thing that happened to a customer.

Whatever can start or resume a scenario (a presence or geofence transition, a webhook, an
opened message, a birthday) is recorded here in the same transaction as its cause, under a
key derived from that cause, so a replayed cause records nothing new and a crash between
the cause and the engine loses nothing: the engine picks up every unprocessed row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    update,
)
from sqlmodel import Field, Session, SQLModel, col

from cloud.bulk import insert_rows
from cloud.db import UtcDateTime
from cloud.leases import take

#: A trigger's attributes are JSON: strings, numbers, booleans, lists and objects of them.
JsonValue = Any


class TriggerKind(StrEnum):
    """Every entry point a scenario can name."""

    PRESENCE_ENTER = "presence.enter"
    PRESENCE_DWELL = "presence.dwell"
    PRESENCE_EXIT = "presence.exit"
    GEOFENCE_ENTER = "geofence.enter"
    GEOFENCE_DWELL = "geofence.dwell"
    GEOFENCE_EXIT = "geofence.exit"
    CUSTOMER_SIGNUP = "customer.signup"
    NEWSLETTER_SIGNUP = "newsletter.signup"
    NEWSLETTER_CONFIRMED = "newsletter.confirmed"
    CART_ABANDONED = "cart.abandoned"
    ORDER_CREATED = "order.created"
    #: The shop cancelled an order (webhook).
    ORDER_CANCELLED = "order.cancelled"
    #: The shop refunded an order, all of it or part (webhook).
    ORDER_REFUNDED = "order.refunded"
    COUPON_REDEEMED = "coupon.redeemed"
    MESSAGE_OPENED = "message.opened"
    MESSAGE_CLICKED = "message.clicked"
    MESSAGE_CONVERTED = "message.converted"
    PUSH_SUBSCRIBED = "push.subscribed"
    WEB_PUSH_SUBSCRIBED = "web_push.subscribed"
    APP_OPENED = "app.opened"
    #: A date field (birthday, a custom date attribute) came round; attributes name it.
    DATE = "date"
    #: No order and no visit for a number of days; attributes say how many.
    INACTIVITY = "inactivity"
    #: Lifetime spend in a currency changed (an order, a cancellation, a refund);
    #: attributes hold the amounts before and after.
    SPEND_CHANGED = "spend.changed"


#: Kinds that stem from where a customer physically is: scenarios entered by them need
#: the customer's consent to location-based marketing on top of the channel's.
LOCATION_KINDS = frozenset({
    TriggerKind.PRESENCE_ENTER, TriggerKind.PRESENCE_DWELL, TriggerKind.PRESENCE_EXIT,
    TriggerKind.GEOFENCE_ENTER, TriggerKind.GEOFENCE_DWELL, TriggerKind.GEOFENCE_EXIT,
})


_PRESENCE = {
    "store": "the store's key",
    "zone": "the zone of the store the gateway covers (\"entrance\", \"floor\")",
    "gateway": "the key of the gateway that saw the customer's device",
    "dwell_s": "seconds the device had been present (0 on enter)",
}
_GEOFENCE = {
    "geofence": "the geofence's key",
    "store": "the key of the store the geofence belongs to, or null",
}
_ITEMS = {
    "categories": "the product categories of the items, sorted (a list: use op \"in\")",
    "skus": "the SKUs of the items, sorted (a list)",
}
_MESSAGE = {
    "message_id": "the message's number",
    "scenario": "the key of the scenario that sent it, or null",
    "step": "the id of the send step that sent it, or null",
    "offer_id": "the number of the offer it carried, or null",
    "product_sku": "the SKU of the product it showed, or null",
    "product_category": "the category of the product it showed, or null",
    "channel": "the channel it went through: push, web_push, email or sms",
}

#: What each kind of trigger carries in its attributes, with a sentence each: what an
#: entry's or a wait's `where` filters may test, and what the scenario reference lists.
#: Recording an attribute not named here is refused (`trigger_row`), so this stays true.
TRIGGER_ATTRIBUTES: Mapping[TriggerKind, Mapping[str, str]] = {
    TriggerKind.PRESENCE_ENTER: _PRESENCE,
    TriggerKind.PRESENCE_DWELL: _PRESENCE,
    TriggerKind.PRESENCE_EXIT: _PRESENCE,
    TriggerKind.GEOFENCE_ENTER: _GEOFENCE,
    TriggerKind.GEOFENCE_DWELL: _GEOFENCE,
    TriggerKind.GEOFENCE_EXIT: _GEOFENCE,
    TriggerKind.CUSTOMER_SIGNUP: {},
    TriggerKind.NEWSLETTER_SIGNUP: {},
    TriggerKind.NEWSLETTER_CONFIRMED: {},
    TriggerKind.CART_ABANDONED: {**_ITEMS, "cart_id": "the shop's id of the cart"},
    TriggerKind.ORDER_CREATED: {
        **_ITEMS,
        "order_id": "the shop's id of the order",
        "total": "the order's total as the shop sent it, a decimal string",
        "currency": "the order's ISO 4217 currency code",
        "coupons": "how many of the order's coupon codes were redeemed",
    },
    TriggerKind.ORDER_CANCELLED: {
        "order_id": "the shop's id of the order",
        "total": "what the order was paid, a decimal string",
        "currency": "the order's ISO 4217 currency code",
        "reason": "why, as the shop said it, or null",
    },
    TriggerKind.ORDER_REFUNDED: {
        "order_id": "the shop's id of the order",
        "refund_id": "the shop's id of the refund",
        "amount": "what this refund gave back, a decimal string",
        "currency": "the order's ISO 4217 currency code",
        "full": "true when nothing of the order is left unrefunded",
        "skus": "the SKUs of the items taken back, sorted (a list; empty for money only)",
    },
    TriggerKind.COUPON_REDEEMED: {
        "order_id": "the shop's id of the order that used the coupon",
        "offer_id": "the number of the coupon's offer",
    },
    TriggerKind.MESSAGE_OPENED: _MESSAGE,
    TriggerKind.MESSAGE_CLICKED: _MESSAGE,
    TriggerKind.MESSAGE_CONVERTED: {
        **_MESSAGE,
        "order_id": "the shop's id of the order that converted it",
        "via": "how the order was tied to the message: coupon or last_touch",
    },
    TriggerKind.PUSH_SUBSCRIBED: {"device_id": "the number of the subscribed device"},
    TriggerKind.WEB_PUSH_SUBSCRIBED: {"device_id": "the number of the subscribed device"},
    TriggerKind.APP_OPENED: {},
    TriggerKind.DATE: {
        "field": "the date field that came round (birth_date)",
        "date": "the day it came round, as YYYY-MM-DD",
    },
    TriggerKind.INACTIVITY: {
        "days": "the entry's inactive_days threshold that was reached",
        "last_active": "when the customer was last active (ISO 8601)",
    },
    TriggerKind.SPEND_CHANGED: {
        "before": "lifetime spend in the currency before the change, a decimal string",
        "after": "lifetime spend in the currency after it (lower after a cancellation or "
                 "a refund), a decimal string",
        "currency": "the order's ISO 4217 currency code: spend is counted per currency",
        "order_id": "the shop's id of the order placed, cancelled or refunded",
    },
}


class Trigger(SQLModel, table=True):
    __tablename__ = "scenario_trigger"
    __table_args__ = (
        UniqueConstraint("tenant", "source_key", name="uq_scenario_trigger_source"),
        Index("ix_scenario_trigger_unprocessed", "processed_at", "id"),
        Index("ix_scenario_trigger_customer", "customer_id", "kind", "occurred_at"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    customer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False)
    )
    kind: TriggerKind = Field(sa_type=String(32))
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    recorded_at: datetime = Field(sa_type=UtcDateTime)
    #: What caused it, e.g. "webhook:<event id>" or "presence:<event id>": the same cause
    #: recorded twice is one trigger.
    source_key: str = Field(max_length=255)
    attributes: dict[str, JsonValue] = Field(default_factory=dict, sa_type=JSON)
    processed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


TRIGGER_TABLE: Table = SQLModel.metadata.tables[Trigger.__tablename__]


def trigger_row(
    *,
    tenant: str,
    customer_id: int,
    kind: TriggerKind,
    occurred_at: datetime,
    source_key: str,
    now: datetime,
    attributes: Mapping[str, JsonValue] | None = None,
) -> dict[str, Any]:
    """A `scenario_trigger` row, for `record_triggers`. Attributes must be ones
    `TRIGGER_ATTRIBUTES` names for the kind: what scenarios may filter on is documented."""
    # Key views compare without building sets: this runs once per presence trigger.
    undeclared = (attributes or {}).keys() - TRIGGER_ATTRIBUTES[kind].keys()
    if undeclared:
        raise ValueError(f"{kind.value} triggers carry no attributes {sorted(undeclared)}: "
                         "declare them in TRIGGER_ATTRIBUTES")
    return {
        "tenant": tenant, "customer_id": customer_id, "kind": kind.value,
        "occurred_at": occurred_at, "recorded_at": now, "source_key": source_key[:255],
        "attributes": dict(attributes or {}), "processed_at": None,
    }


def record_triggers(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Record many triggers (`trigger_row`s) in one statement; returns how many were new
    (a cause recorded before is skipped, as `record_trigger` skips it)."""
    return len(_insert_new(session, rows))


def record_trigger(
    session: Session,
    *,
    tenant: str,
    customer_id: int,
    kind: TriggerKind,
    occurred_at: datetime,
    source_key: str,
    now: datetime,
    attributes: Mapping[str, JsonValue] | None = None,
) -> int | None:
    """Record that `kind` happened to a customer; returns the new row's id, or None when
    `source_key` was recorded before (a replayed cause)."""
    inserted = _insert_new(session, [trigger_row(
        tenant=tenant, customer_id=customer_id, kind=kind, occurred_at=occurred_at,
        source_key=source_key, now=now, attributes=attributes,
    )])
    return int(inserted[0][0]) if inserted else None


def claim_triggers(session: Session, *, now: datetime, limit: int) -> list[Trigger]:
    """Up to `limit` unprocessed triggers, oldest first, marked processed at `now` by the
    statement that takes them (one round trip, not a read and a later update). The mark
    commits or rolls back with whatever the caller's transaction does about them; rows
    another worker has taken are skipped (`cloud.leases.take`)."""
    oldest = take(session, TRIGGER_TABLE, where=TRIGGER_TABLE.c.processed_at.is_(None),
                  order_by=[TRIGGER_TABLE.c.id], limit=limit)
    claimed = session.scalars(
        update(Trigger).where(oldest, col(Trigger.processed_at).is_(None))
        .values(processed_at=now).returning(Trigger),
        execution_options={"synchronize_session": False},
    ).all()
    return sorted(claimed, key=lambda trigger: trigger.id or 0)


def _insert_new(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The ids of the rows inserted; a (tenant, source key) recorded before is skipped."""
    return insert_rows(
        session.connection(), TRIGGER_TABLE, rows,
        skip_conflicts_on=["tenant", "source_key"], returning=[TRIGGER_TABLE.c.id],
    )
