"""What the shop tells the orchestrator through signed webhooks, and how it is kept.

Every webhook carries the shop's own `event_id`: a retried delivery is stored once.
Orders get a row each (`Order`, one per order id, whatever event ids it came under):
what the customer paid, what was refunded, whether it was cancelled; spend is money
paid, not list prices. Order lines get a table of their own because scenarios ask
questions of them ("bought a washing machine", "never bought a dryer"); refunds one too,
so that a refund re-sent under a new event id is recognised by its own id.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, HttpUrl, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.bounds import BoundedText, DbDatetime, RowId
from cloud.customers.models import EMAIL_PATTERN, EXTERNAL_ID_PATTERN
from cloud.db import UtcDateTime
from cloud.examples import CUSTOMER_ID, example

ShopId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/-]{1,128}$")]
Email = Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254)]
#: An ISO 4217 code, as orders and refunds carry it.
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
#: Money in an order event: cents, up to what `Order.total` holds.
OrderAmount = Annotated[Decimal, PydanticField(max_digits=14, decimal_places=2)]
#: A code as the shop's checkout took it: ours (cloud.offers.codes) or the shop's own, in
#: either case; loose enough that a foreign code does not cost the order its webhook.
CouponCodeText = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
]


class CommerceEventType(StrEnum):
    CART_UPDATED = "cart.updated"
    CART_ABANDONED = "cart.abandoned"
    ORDER_CREATED = "order.created"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_REFUNDED = "order.refunded"
    NEWSLETTER_SIGNUP = "newsletter.signup"
    NEWSLETTER_CONFIRMED = "newsletter.confirmed"
    APP_OPENED = "app.opened"
    PUSH_OPENED = "push.opened"


class CommerceEvent(SQLModel, table=True):
    __tablename__ = "commerce_event"
    __table_args__ = (
        UniqueConstraint("tenant", "event_id", name="uq_commerce_event_id"),
        Index("ix_commerce_event_customer", "customer_id", "type", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    event_id: str = Field(max_length=128)
    type: CommerceEventType = Field(sa_type=String(32))
    customer_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=True),
    )
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    received_at: datetime = Field(sa_type=UtcDateTime)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_line"
    __table_args__ = (
        UniqueConstraint("tenant", "order_id", "line", name="uq_order_line"),
        Index("ix_order_line_customer", "customer_id", "category"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    order_id: str = Field(max_length=128)
    line: int
    customer_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=True),
    )
    sku: str = Field(max_length=128)
    name: str = Field(max_length=200)
    category: str = Field(max_length=128)
    quantity: int
    unit_price: Decimal = Field(sa_type=Numeric(12, 2))
    currency: str = Field(max_length=3)
    ordered_at: datetime = Field(sa_type=UtcDateTime)
    #: How many of `quantity` refunds took back: a line all of whose items came back is
    #: no longer a purchase.
    returned: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class OrderStatus(StrEnum):
    PLACED = "placed"
    #: Cancelled by the shop: it counts for nothing (spend, purchases, conversions).
    CANCELLED = "cancelled"
    #: Refunded in full: as good as cancelled for spend, purchases and conversions.
    REFUNDED = "refunded"


class Order(SQLModel, table=True):
    """One order, once, however many event ids it arrived under: what the customer paid
    (the webhook's `total`, after discounts) and what refunds gave back, in the order's
    currency. Lifetime spend sums `total - refunded` of the orders not cancelled."""

    __tablename__ = "commerce_order"
    __table_args__ = (
        UniqueConstraint("tenant", "order_id", name="uq_commerce_order"),
        Index("ix_commerce_order_customer", "customer_id", "currency"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    order_id: str = Field(max_length=128)
    customer_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=True),
    )
    currency: str = Field(max_length=3)
    total: Decimal = Field(sa_type=Numeric(14, 2))
    refunded: Decimal = Field(default=Decimal("0.00"), sa_type=Numeric(14, 2))
    status: OrderStatus = Field(default=OrderStatus.PLACED, sa_type=String(16))
    ordered_at: datetime = Field(sa_type=UtcDateTime)
    recorded_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    cancel_reason: str | None = Field(default=None, max_length=200)


class OrderRefund(SQLModel, table=True):
    """A refund, once per (order, refund id): the same refund re-sent under a new event
    id changes nothing."""

    __tablename__ = "order_refund"
    __table_args__ = (
        UniqueConstraint("tenant", "order_id", "refund_id", name="uq_order_refund"),
        Index("ix_order_refund_customer", "customer_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    order_id: str = Field(max_length=128)
    refund_id: str = Field(max_length=128)
    customer_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=True),
    )
    event_id: str = Field(max_length=128)
    amount: Decimal = Field(sa_type=Numeric(14, 2))
    currency: str = Field(max_length=3)
    #: The items taken back, as the shop listed them: [{"sku": ..., "quantity": ...}].
    items: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    refunded_at: datetime = Field(sa_type=UtcDateTime)
    recorded_at: datetime = Field(sa_type=UtcDateTime)


# --- webhook bodies ------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerRef(_Body):
    """Who the event is about, in the shop's terms; at least one of the two."""

    external_id: Annotated[str, StringConstraints(pattern=EXTERNAL_ID_PATTERN)] | None = None
    email: Email | None = None


class LineItem(_Body):
    sku: ShopId
    name: BoundedText = PydanticField(min_length=1, max_length=200)
    category: ShopId
    quantity: int = PydanticField(ge=1, le=10_000)
    unit_price: Decimal = PydanticField(ge=0, max_digits=12, decimal_places=2)


class _Event(_Body):
    event_id: ShopId
    occurred_at: DbDatetime
    customer: CustomerRef | None = None


class CartEvent(_Event):
    """The cart as it is now (`cart.updated`), or left behind (`cart.abandoned`)."""

    model_config = ConfigDict(json_schema_extra=example(
        {"type": "cart.abandoned", "event_id": "evt-cart-77-abandoned",
         "occurred_at": "2026-12-07T10:08:00Z", "customer": {"external_id": "juan-42"},
         "cart_id": "cart-77", "url": "https://shop.example/cart",
         "items": [{"sku": "WM-8KG", "name": "Washing machine 8 kg", "category": "washers",
                    "quantity": 1, "unit_price": "599.00"}]},
    ))

    type: Literal[CommerceEventType.CART_UPDATED, CommerceEventType.CART_ABANDONED]
    cart_id: ShopId
    items: list[LineItem] = PydanticField(max_length=500)
    url: HttpUrl | None = None


class OrderCreated(_Event):
    """An order: every line, its total, and the coupon codes entered at checkout."""

    model_config = ConfigDict(json_schema_extra=example(
        {"type": "order.created", "event_id": "evt-order-1001",
         "occurred_at": "2026-12-07T10:30:00Z",
         "customer": {"external_id": "juan-42", "email": "juan@example.com"},
         "order_id": "order-1001", "currency": "EUR", "total": "599.00",
         "coupons": ["CART15-7QX2"],
         "items": [{"sku": "WM-8KG", "name": "Washing machine 8 kg", "category": "washers",
                    "quantity": 1, "unit_price": "599.00"}]},
    ))

    type: Literal[CommerceEventType.ORDER_CREATED]
    order_id: ShopId
    items: list[LineItem] = PydanticField(min_length=1, max_length=500)
    currency: Currency
    total: OrderAmount = PydanticField(
        ge=0, description="what the customer paid: after discounts and coupons; what "
        "lifetime spend counts")
    coupons: list[CouponCodeText] = PydanticField(
        default_factory=list, max_length=20,
        description="codes the customer entered at checkout; ours are redeemed once, "
        "others are ignored (and counted)",
    )


class OrderCancelled(_Event):
    """The shop cancelled an order: it stops counting towards spend and purchases, the
    loyalty credit it earned and the conversion it made are taken back, and coupons of
    offers that say so can be used again."""

    model_config = ConfigDict(json_schema_extra=example(
        {"type": "order.cancelled", "event_id": "evt-order-1001-cancelled",
         "occurred_at": "2026-12-07T16:45:00Z", "customer": {"external_id": "juan-42"},
         "order_id": "order-1001", "reason": "customer changed their mind"},
    ))

    type: Literal[CommerceEventType.ORDER_CANCELLED]
    order_id: ShopId
    reason: Annotated[BoundedText, PydanticField(min_length=1, max_length=200)] | None = None


class RefundItem(_Body):
    sku: ShopId
    quantity: int = PydanticField(ge=1, le=10_000)


class OrderRefunded(_Event):
    """Money given back on an order, all of it or part: spend goes down by `amount`, and
    loyalty credit the order earned goes down in proportion."""

    model_config = ConfigDict(json_schema_extra=example(
        {"type": "order.refunded", "event_id": "evt-refund-77",
         "occurred_at": "2026-12-12T09:10:00Z", "customer": {"external_id": "juan-42"},
         "order_id": "order-1001", "refund_id": "refund-77", "amount": "25.00",
         "currency": "EUR", "items": [{"sku": "HOSE-2M", "quantity": 1}]},
    ))

    type: Literal[CommerceEventType.ORDER_REFUNDED]
    order_id: ShopId
    refund_id: ShopId = PydanticField(
        description="the shop's id of this refund: each refund is applied once, whatever "
        "event id it comes under")
    amount: OrderAmount = PydanticField(gt=0, description="what was given back")
    currency: Currency = PydanticField(description="the order's currency")
    items: list[RefundItem] = PydanticField(
        default_factory=list, max_length=500,
        description="the items taken back, if any: a line all of whose items are back no "
        "longer counts as a purchase",
    )


class NewsletterEvent(_Event):
    """A newsletter sign-up, or its double opt-in confirmed (which records email consent)."""

    model_config = ConfigDict(json_schema_extra=example(
        {"type": "newsletter.signup", "event_id": "evt-nl-signup-5512",
         "occurred_at": "2026-12-01T18:02:00Z", "email": "juan@example.com",
         "source": "footer-form"},
    ))

    type: Literal[CommerceEventType.NEWSLETTER_SIGNUP, CommerceEventType.NEWSLETTER_CONFIRMED]
    email: Email
    source: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$")] = "web"


class AppOpened(_Event):
    """The customer opened the shop's app."""

    model_config = ConfigDict(json_schema_extra=example(
        {"type": "app.opened", "event_id": "evt-app-open-9c1e",
         "occurred_at": "2026-12-07T11:00:00Z", "customer": {"external_id": "juan-42"}},
    ))

    type: Literal[CommerceEventType.APP_OPENED]


class PushOpened(_Event):
    """A push was opened, as the shop's server learnt it."""

    model_config = ConfigDict(json_schema_extra=example(
        {"type": "push.opened", "event_id": "evt-push-open-31337",
         "occurred_at": "2026-12-07T11:01:00Z", "customer": {"external_id": "juan-42"},
         "message_id": 31337},
    ))

    type: Literal[CommerceEventType.PUSH_OPENED]
    message_id: RowId = PydanticField(description="the message_id the push carried")


WebhookEvent = Annotated[
    CartEvent | OrderCreated | OrderCancelled | OrderRefunded | NewsletterEvent | AppOpened
    | PushOpened,
    PydanticField(discriminator="type"),
]


class Ignored(StrEnum):
    """Why an event that was stored changed nothing."""

    #: An order.created whose order id came before under another event id.
    DUPLICATE_ORDER = "duplicate_order"
    #: An order.refunded whose refund id came before under another event id.
    DUPLICATE_REFUND = "duplicate_refund"
    #: An order.cancelled or order.refunded about an order never received.
    UNKNOWN_ORDER = "unknown_order"
    #: An order.cancelled about an order cancelled before.
    ALREADY_CANCELLED = "already_cancelled"
    #: An order.refunded about a cancelled order: recorded, but the order counted for
    #: nothing already.
    ORDER_CANCELLED = "order_cancelled"


class WebhookReceipt(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"event_id": "evt-order-1001", "stored": True, "customer_id": CUSTOMER_ID,
         "ignored": None},
        {"event_id": "evt-order-1001-resent", "stored": True, "customer_id": CUSTOMER_ID,
         "ignored": "duplicate_order"},
    ))

    event_id: str
    stored: bool = PydanticField(description="false when this event id was already received")
    customer_id: str | None = PydanticField(description="the customer's public id (cus_...)")
    ignored: Ignored | None = PydanticField(
        default=None,
        description="set when the event was stored but changed nothing, and why: "
        "duplicate_order (this order id came before under another event id), "
        "duplicate_refund (this refund id came before), unknown_order (no order.created "
        "with this order id was received), already_cancelled, order_cancelled (a refund of "
        "a cancelled order: recorded only)",
    )
