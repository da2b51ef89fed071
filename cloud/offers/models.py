"""Offers, complementary-category rules and coupons: tables and API bodies.

An offer is a discount on a product (`sku`) or on a whole category, valid over a period,
optionally limited by stock (how many coupons may be issued) and by budget (how much
discount, counted at the offer's price, may be promised in total). Its product fields are
what messages show, so they are validated as strictly as the templates' `product` section
(`cloud.templates.context`): a saved offer can always be put in a message.

Once coupons exist, an offer's terms (discount, product, category, price, currency) are
fixed: a customer keeps what was promised. Names, links, validity and limits may change,
and so may `reissue_on_cancel`: whether a coupon spent on an order the shop then
cancels may be used again (read when the cancellation arrives).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, StringConstraints, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    UniqueConstraint,
    false,
)
from sqlmodel import Field, SQLModel

from cloud.bounds import DbDatetime
from cloud.commerce.models import ShopId
from cloud.db import UtcDateTime
from cloud.examples import CUSTOMER_ID, example
from cloud.segments.models import SegmentKey
from cloud.templates.context import (
    COUPON_CODE_MAX,
    IMAGE_URL_MAX,
    MAX_AMOUNT,
    PAGE_URL_MAX,
    PRODUCT_NAME_MAX,
    ImageUrl,
    PageUrl,
    ProductName,
)
from cloud.templates.formatting import Currency

#: Offer keys appear in URL paths and code prefixes: no slash, no space.
OFFER_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
OFFER_NAME_MAX = 200
#: A tenant's complement rules are replaced as one list; more than this is a mistake.
MAX_COMPLEMENT_RULES = 500
#: Priorities are small integers, lower first; room to insert between 10, 20, 30.
MAX_PRIORITY = 10_000
#: How many coupons one order webhook may name.
MAX_COUPONS_PER_ORDER = 20

OfferKey = Annotated[str, StringConstraints(pattern=OFFER_KEY_PATTERN)]
#: Money as the templates' `Money` holds it: cents, not negative, at most 9,999,999.99.
Amount = Annotated[Decimal, PydanticField(ge=0, le=MAX_AMOUNT, max_digits=12, decimal_places=2)]


def _printable_name(value: str) -> str:
    if not value.strip() or any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError("must be printable text without control characters")
    return value


OfferName = Annotated[
    str, StringConstraints(min_length=1, max_length=OFFER_NAME_MAX), AfterValidator(_printable_name)
]


# --- tables ----------------------------------------------------------------------------------


class Offer(SQLModel, table=True):
    __tablename__ = "offer"
    __table_args__ = (
        UniqueConstraint("tenant", "key", name="uq_offer_key"),
        Index("ix_offer_tenant_category", "tenant", "category"),
        CheckConstraint(
            "discount_percent >= 1 AND discount_percent <= 100", name="ck_offer_discount"
        ),
        CheckConstraint("sku IS NOT NULL OR category IS NOT NULL", name="ck_offer_target"),
        # Ids are referenced by coupons and messages: never handed out twice.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    key: str = Field(max_length=64)
    name: str = Field(max_length=OFFER_NAME_MAX)
    discount_percent: int
    sku: str | None = Field(default=None, max_length=128)
    category: str | None = Field(default=None, max_length=128)
    product_name: str = Field(max_length=PRODUCT_NAME_MAX)
    product_url: str = Field(max_length=PAGE_URL_MAX)
    image_url: str = Field(max_length=IMAGE_URL_MAX)
    price: Decimal = Field(sa_type=Numeric(12, 2))
    currency: str = Field(max_length=3)
    valid_from: datetime = Field(sa_type=UtcDateTime)
    valid_until: datetime | None = Field(default=None, sa_type=UtcDateTime)
    coupon_limit: int | None = None
    budget_limit: Decimal | None = Field(default=None, sa_type=Numeric(12, 2))
    coupons_issued: int = 0
    budget_used: Decimal = Field(default=Decimal("0.00"), sa_type=Numeric(12, 2))
    active: bool = True
    #: A coupon spent on an order the shop cancels may be used again (until it expires).
    reissue_on_cancel: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    #: Only customers in this segment (as it stands when the offer is chosen) get it.
    segment: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class ComplementRule(SQLModel, table=True):
    """Customers who bought `from_category` are offered `to_category` (washers -> dryers)."""

    __tablename__ = "complement_rule"
    __table_args__ = (
        UniqueConstraint("tenant", "from_category", "to_category", name="uq_complement_rule"),
        CheckConstraint("from_category <> to_category", name="ck_complement_rule_distinct"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    from_category: str = Field(max_length=128)
    to_category: str = Field(max_length=128)
    priority: int


class Coupon(SQLModel, table=True):
    __tablename__ = "coupon"
    __table_args__ = (
        UniqueConstraint("code", name="uq_coupon_code"),
        UniqueConstraint("tenant", "idempotency_key", name="uq_coupon_idempotency_key"),
        Index("ix_coupon_customer", "customer_id", "issued_at"),
        Index("ix_coupon_offer", "offer_id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant: str = Field(max_length=64)
    code: str = Field(max_length=COUPON_CODE_MAX)
    customer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("customer.id", ondelete="CASCADE"), nullable=False)
    )
    offer_id: int = Field(
        sa_column=Column(Integer, ForeignKey("offer.id"), nullable=False)
    )
    issued_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    #: When the order that used it was placed (the order's time, not the webhook's).
    redeemed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    order_id: str | None = Field(default=None, max_length=128)
    idempotency_key: str = Field(max_length=255)
    #: When a cancelled order gave the coupon back (its offer says `reissue_on_cancel`),
    #: and which order that was: it is redeemable again.
    reissued_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    reissued_from_order_id: str | None = Field(default=None, max_length=128)


# --- API bodies ------------------------------------------------------------------------------


class OfferCreate(SQLModel):
    """PUT /tenants/{tenant}/offers/{key}: the whole offer (a missing optional field is
    cleared, except `valid_from`, which keeps the stored start, or now for a new offer)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=example(  # type: ignore[assignment]
        {"name": "Dryers 20% off for washer buyers", "discount_percent": 20, "category": "dryers",
         "product_name": "Heat-pump dryer 8 kg",
         "product_url": "https://shop.example/dryers/hp-8kg",
         "image_url": "https://shop.example/img/hp-8kg.jpg", "price": "549.00", "currency": "EUR",
         "valid_until": "2027-03-31T23:59:59Z", "coupon_limit": 500,
         "reissue_on_cancel": True,
         "segment": "washer-buyers-30d"},
    ))

    name: OfferName
    discount_percent: int = Field(ge=1, le=100)
    sku: ShopId | None = Field(default=None, description="the product on offer")
    category: ShopId | None = Field(
        default=None, description="the category on offer; cross-selling matches on it"
    )
    product_name: ProductName = Field(description="what messages call the product")
    product_url: PageUrl = Field(description="the product's (or the category's) page")
    image_url: ImageUrl
    price: Amount = Field(
        description="the product's price, or a category's reference price: shown in "
        "messages and the base of the budget count",
    )
    currency: Currency
    valid_from: DbDatetime | None = None
    valid_until: DbDatetime | None = None
    coupon_limit: int | None = Field(
        default=None, ge=0, le=100_000_000, description="how many coupons may be issued"
    )
    budget_limit: Amount | None = Field(
        default=None,
        description="total discount (price x percent) the issued coupons may promise",
    )
    active: bool = True
    reissue_on_cancel: bool = Field(
        default=False,
        description="a coupon spent on an order the shop then cancels (order.cancelled) "
        "becomes redeemable again, if it has not expired; otherwise it stays spent",
    )
    segment: SegmentKey | None = Field(
        default=None, description="only customers in this segment get the offer (its "
        "definition when the offer is chosen); the segment must exist",
    )

    @model_validator(mode="after")
    def _consistent(self) -> OfferCreate:
        if self.sku is None and self.category is None:
            raise ValueError("an offer needs a sku, a category or both")
        if (
            self.valid_from is not None and self.valid_until is not None
            and self.valid_until <= self.valid_from
        ):
            raise ValueError("valid_until must be after valid_from")
        return self


class OfferPublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": 5, "key": "dryers-20", "name": "Dryers 20% off for washer buyers",
         "discount_percent": 20, "sku": None, "category": "dryers",
         "product_name": "Heat-pump dryer 8 kg",
         "product_url": "https://shop.example/dryers/hp-8kg",
         "image_url": "https://shop.example/img/hp-8kg.jpg", "price": "549.00", "currency": "EUR",
         "valid_from": "2026-12-01T00:00:00Z", "valid_until": "2027-03-31T23:59:59Z",
         "coupon_limit": 500, "budget_limit": None, "coupons_issued": 37,
         "budget_used": "4062.60", "active": True, "reissue_on_cancel": False,
         "segment": "washer-buyers-30d",
         "created_at": "2026-12-01T00:00:00Z",
         "updated_at": "2026-12-01T00:00:00Z"},
    ))

    id: int
    key: str
    name: str
    discount_percent: int
    sku: str | None
    category: str | None
    product_name: str
    product_url: str
    image_url: str
    price: Decimal
    currency: str
    valid_from: datetime
    valid_until: datetime | None
    coupon_limit: int | None
    budget_limit: Decimal | None
    coupons_issued: int
    budget_used: Decimal
    active: bool
    reissue_on_cancel: bool = False
    segment: str | None = None
    created_at: datetime
    updated_at: datetime


class ComplementRuleCreate(SQLModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=example(  # type: ignore[assignment]
        {"from_category": "washers", "to_category": "dryers", "priority": 10},
    ))

    from_category: ShopId
    to_category: ShopId
    priority: int = Field(
        default=100, ge=0, le=MAX_PRIORITY, description="lower comes first"
    )

    @model_validator(mode="after")
    def _distinct(self) -> ComplementRuleCreate:
        if self.from_category == self.to_category:
            raise ValueError("a category cannot complement itself")
        return self


class ComplementRulePublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"from_category": "washers", "to_category": "dryers", "priority": 10},
    ))

    from_category: str
    to_category: str
    priority: int


class CouponStatus(StrEnum):
    ACTIVE = "active"
    REDEEMED = "redeemed"
    EXPIRED = "expired"


class OfferCouponPublic(SQLModel):
    """One of an offer's coupons, as the back office sees it (whose, not who)."""

    code: str
    customer_id: str = Field(description="the customer's public id")
    issued_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None
    order_id: str | None
    status: CouponStatus
    reissued_at: datetime | None = Field(
        default=None, description="when a cancelled order gave it back")


class OfferCoupons(SQLModel):
    """How an offer's coupons stand: counts by state, and the newest coupons."""

    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"issued": 37, "active": 20, "redeemed": 12, "expired": 5,
         "newest": [{"code": "DRY20-7QX2", "customer_id": CUSTOMER_ID,
                     "issued_at": "2026-12-07T10:15:00Z", "expires_at": "2026-12-08T10:15:00Z",
                     "redeemed_at": None, "order_id": None, "status": "active"}]},
    ))

    issued: int
    active: int
    redeemed: int
    expired: int
    newest: list[OfferCouponPublic]


class CouponPublic(SQLModel):
    model_config = ConfigDict(json_schema_extra=example(  # type: ignore[assignment]
        {"id": 901, "code": "DRY20-7QX2", "offer_key": "dryers-20", "discount_percent": 20,
         "sku": None, "category": "dryers", "issued_at": "2026-12-07T10:15:00Z",
         "expires_at": "2026-12-08T10:15:00Z", "redeemed_at": None, "order_id": None,
         "status": "active"},
    ))

    id: int
    code: str
    offer_key: str
    discount_percent: int
    sku: str | None
    category: str | None
    issued_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None
    order_id: str | None
    status: CouponStatus
    reissued_at: datetime | None = Field(
        default=None, description="when a cancelled order gave it back: redeemable again")
