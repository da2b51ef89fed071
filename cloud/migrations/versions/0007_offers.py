"""Offers, complementary categories and single-use coupons.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_MONEY = sa.Numeric(12, 2)


def upgrade() -> None:
    op.create_table(
        "offer",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("discount_percent", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(128), nullable=True),
        sa.Column("category", sa.String(128), nullable=True),
        sa.Column("product_name", sa.String(60), nullable=False),
        sa.Column("product_url", sa.String(500), nullable=False),
        sa.Column("image_url", sa.String(1000), nullable=False),
        sa.Column("price", _MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("valid_from", _TIME, nullable=False),
        sa.Column("valid_until", _TIME, nullable=True),
        sa.Column("coupon_limit", sa.Integer(), nullable=True),
        sa.Column("budget_limit", _MONEY, nullable=True),
        sa.Column("coupons_issued", sa.Integer(), nullable=False),
        sa.Column("budget_used", _MONEY, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "key", name="uq_offer_key"),
        sa.CheckConstraint(
            "discount_percent >= 1 AND discount_percent <= 100", name="ck_offer_discount"
        ),
        sa.CheckConstraint("sku IS NOT NULL OR category IS NOT NULL", name="ck_offer_target"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_offer_tenant_category", "offer", ["tenant", "category"])
    op.create_table(
        "complement_rule",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("from_category", sa.String(128), nullable=False),
        sa.Column("to_category", sa.String(128), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.UniqueConstraint(
            "tenant", "from_category", "to_category", name="uq_complement_rule"
        ),
        sa.CheckConstraint("from_category <> to_category", name="ck_complement_rule_distinct"),
    )
    op.create_table(
        "coupon",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column(
            "customer_id", sa.Integer(), sa.ForeignKey("customer.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("offer_id", sa.Integer(), sa.ForeignKey("offer.id"), nullable=False),
        sa.Column("issued_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("redeemed_at", _TIME, nullable=True),
        sa.Column("order_id", sa.String(128), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.UniqueConstraint("code", name="uq_coupon_code"),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_coupon_idempotency_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_coupon_customer", "coupon", ["customer_id", "issued_at"])
    op.create_index("ix_coupon_offer", "coupon", ["offer_id"])


def downgrade() -> None:
    op.drop_index("ix_coupon_offer", table_name="coupon")
    op.drop_index("ix_coupon_customer", table_name="coupon")
    op.drop_table("coupon")
    op.drop_table("complement_rule")
    op.drop_index("ix_offer_tenant_category", table_name="offer")
    op.drop_table("offer")
