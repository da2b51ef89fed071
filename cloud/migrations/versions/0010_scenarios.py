"""Scenarios, journeys with their durable timers, the journey log, tags, loyalty credit, and
the customer's time zone (quiet hours and birthdays follow the customer's clock).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def _customer_fk(*, primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        "customer_id", sa.Integer(), sa.ForeignKey("customer.id", ondelete="CASCADE"),
        nullable=False, primary_key=primary_key,
    )


def upgrade() -> None:
    with op.batch_alter_table("customer") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=True))
    op.create_table(
        "scenario",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.UniqueConstraint("tenant", "key", name="uq_scenario_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_scenario_tenant", "scenario", ["tenant"])
    op.create_table(
        "journey",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("scenario_key", sa.String(64), nullable=False),
        sa.Column("scenario_version", sa.Integer(), nullable=False),
        _customer_fk(),
        sa.Column("entry_key", sa.String(255), nullable=False, unique=True),
        sa.Column("entry_kind", sa.String(32), nullable=False),
        sa.Column("variant", sa.String(64), nullable=True),
        sa.Column("holdout", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.String(64), nullable=True),
        sa.Column("wake_at", _TIME, nullable=True),
        sa.Column("waiting_for", sa.String(32), nullable=True),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("finished_at", _TIME, nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("context", sa.JSON(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_journey_due", "journey", ["status", "wake_at"])
    op.create_index("ix_journey_customer", "journey", ["customer_id", "status"])
    op.create_index(
        "ix_journey_scenario_customer", "journey",
        ["tenant", "scenario_key", "customer_id", "started_at"],
    )
    op.create_table(
        "journey_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "journey_id", sa.Integer(), sa.ForeignKey("journey.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _customer_fk(),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(500), nullable=True),
    )
    op.create_index("ix_journey_log_journey", "journey_log", ["journey_id", "id"])
    op.create_table(
        "customer_tag",
        _customer_fk(primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
        sa.Column("added_at", _TIME, nullable=False),
    )
    op.create_table(
        "loyalty_entry",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        _customer_fk(),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_loyalty_entry_customer_id", "loyalty_entry", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_loyalty_entry_customer_id", table_name="loyalty_entry")
    op.drop_table("loyalty_entry")
    op.drop_table("customer_tag")
    op.drop_index("ix_journey_log_journey", table_name="journey_log")
    op.drop_table("journey_log")
    op.drop_index("ix_journey_scenario_customer", table_name="journey")
    op.drop_index("ix_journey_customer", table_name="journey")
    op.drop_index("ix_journey_due", table_name="journey")
    op.drop_table("journey")
    op.drop_index("ix_scenario_tenant", table_name="scenario")
    op.drop_table("scenario")
    with op.batch_alter_table("customer") as batch:
        batch.drop_column("time_zone")
