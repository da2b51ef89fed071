"""The durable send queue and tracking: message content, attempts, opens, clicks, conversions.

The message table becomes the send queue (content, not_before, next_attempt_at,
expires_at, the scenario and offer it belongs to, the tracking token, delivered /
clicked / converted times); every provider call is a message_attempt row; SMS delivery
receipts are kept until their message is known; each tenant's VAPID key is stored.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)

#: (name, type) of the columns the message table gains, all nullable but `content`.
_MESSAGE_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("not_before", _TIME),
    ("next_attempt_at", _TIME),
    ("expires_at", _TIME),
    ("scenario", sa.String(64)),
    ("step", sa.String(64)),
    ("journey_id", sa.Integer()),
    ("variant", sa.String(32)),
    ("offer_id", sa.Integer()),
    ("coupon_id", sa.Integer()),
    ("product_sku", sa.String(128)),
    ("product_category", sa.String(128)),
    ("target_url", sa.Text()),
    ("tracking_token", sa.String(32)),
    ("delivered_at", _TIME),
    ("clicked_at", _TIME),
    ("converted_at", _TIME),
    ("conversion_order_id", sa.String(128)),
)
_MESSAGE_INDEXES = (
    ("ix_message_due", ["status", "next_attempt_at"]),
    ("ix_message_funnel", ["tenant", "created_at"]),
    ("ix_message_provider_id", ["provider_message_id"]),
    ("ix_message_coupon_id", ["coupon_id"]),
)


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(
            sa.Column("content", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        for name, type_ in _MESSAGE_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.create_unique_constraint("uq_message_tracking_token", ["tracking_token"])
    for name, columns in _MESSAGE_INDEXES:
        op.create_index(name, "message", columns)
    op.create_table(
        "message_attempt",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "message_id", sa.Integer(), sa.ForeignKey("message.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "device_id", sa.Integer(), sa.ForeignKey("device.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempted_at", _TIME, nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("provider_message_id", sa.String(255), nullable=True),
        sa.Column("retry_after_s", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_message_attempt_message_id", "message_attempt", ["message_id"])
    op.create_table(
        "sms_receipt",
        sa.Column("provider_message_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("received_at", _TIME, nullable=False),
    )
    op.create_table(
        "web_push_key",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("private_pem", sa.String(1000), nullable=False),
        sa.Column("application_server_key", sa.String(100), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("web_push_key")
    op.drop_table("sms_receipt")
    op.drop_index("ix_message_attempt_message_id", table_name="message_attempt")
    op.drop_table("message_attempt")
    for name, _columns in reversed(_MESSAGE_INDEXES):
        op.drop_index(name, table_name="message")
    with op.batch_alter_table("message") as batch:
        batch.drop_constraint("uq_message_tracking_token", type_="unique")
        for name, _type in reversed(_MESSAGE_COLUMNS):
            batch.drop_column(name)
        batch.drop_column("content")
