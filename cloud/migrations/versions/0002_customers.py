"""Customers, consent ledger, devices, identity links and messages.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def _customer_fk(*, index: bool = False) -> sa.Column[int]:
    return sa.Column(
        "customer_id", sa.Integer(), sa.ForeignKey("customer.id", ondelete="CASCADE"),
        nullable=False, index=index,
    )


def upgrade() -> None:
    op.create_table(
        "customer",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("phone", sa.String(16), nullable=True),
        sa.Column("first_name", sa.String(100), nullable=True),
        sa.Column("last_name", sa.String(100), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("locale", sa.String(16), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "external_id", name="uq_customer_external_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_customer_tenant", "customer", ["tenant"])
    op.create_table(
        "consent",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _customer_fk(),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("given_at", _TIME, nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False),
    )
    op.create_index(
        "ix_consent_customer_channel", "consent", ["customer_id", "channel", "given_at"]
    )
    op.create_table(
        "device",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        _customer_fk(index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("web_push_p256dh", sa.String(256), nullable=True),
        sa.Column("web_push_auth", sa.String(64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("registered_at", _TIME, nullable=False),
        sa.Column("deactivated_at", _TIME, nullable=True),
        sa.Column("deactivation_reason", sa.String(200), nullable=True),
        sa.UniqueConstraint("tenant", "kind", "token", name="uq_device_token"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "identity_link",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column(
            "device_id", sa.Integer(), sa.ForeignKey("device.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _customer_fk(index=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "pseudonym", name="uq_identity_link_pseudonym"),
    )
    op.create_table(
        "message",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        _customer_fk(index=True),
        sa.Column(
            "device_id", sa.Integer(), sa.ForeignKey("device.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("store", sa.String(64), nullable=True),
        sa.Column("visit_start", _TIME, nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("provider_message_id", sa.String(255), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("sent_at", _TIME, nullable=True),
        sa.UniqueConstraint("idempotency_key"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_message_customer_rule", "message", ["customer_id", "rule", "store", "visit_start"]
    )


def downgrade() -> None:
    op.drop_index("ix_message_customer_rule", table_name="message")
    op.drop_table("message")
    op.drop_table("identity_link")
    op.drop_table("device")
    op.drop_index("ix_consent_customer_channel", table_name="consent")
    op.drop_table("consent")
    op.drop_index("ix_customer_tenant", table_name="customer")
    op.drop_table("customer")
