"""What the shop tells the orchestrator through signed webhooks, and how it is kept.

Every webhook carries the shop's own `event_id`: a retried delivery is stored once.
Order lines get a table of their own because scenarios ask questions of them ("bought a
washing machine", "never bought a dryer").
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
#: A code as the shop's checkout took it: ours (cloud.offers.codes) or the shop's own, in
#: either case; loose enough that a foreign code does not cost the order its webhook.
CouponCodeText = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
]


class CommerceEventType(StrEnum):
    CART_UPDATED = "cart.updated"
    CART_ABANDONED = "cart.abandoned"
    ORDER_CREATED = "order.created"
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
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    total: Decimal = PydanticField(ge=0, max_digits=14, decimal_places=2)
    coupons: list[CouponCodeText] = PydanticField(
        default_factory=list, max_length=20,
        description="codes the customer entered at checkout; ours are redeemed once, "
        "others are ignored (and counted)",
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
    CartEvent | OrderCreated | NewsletterEvent | AppOpened | PushOpened,
    PydanticField(discriminator="type"),
]


class WebhookReceipt(BaseModel):
    model_config = ConfigDict(json_schema_extra=example(
        {"event_id": "evt-order-1001", "stored": True, "customer_id": CUSTOMER_ID},
    ))

    event_id: str
    stored: bool = PydanticField(description="false when this event id was already received")
    customer_id: str | None = PydanticField(description="the customer's public id (cus_...)")
