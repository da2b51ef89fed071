"""Customers' own identity: public customer ids (random, not the database's sequence),
anonymous app installations, and the public keys tenants sign customer tokens with.

Existing customers get a random public id each; none of them is anonymous (they were
all signed up before installations existed).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-09
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision: str | None = "0023"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
#: As `cloud.customers.models.new_public_id` (copied: a migration keeps its own).
_PUBLIC_ID_PREFIX = "cus_"
_PUBLIC_ID_BYTES = 16
#: Existing customers are numbered in batches, so a big table is not held in memory.
_BACKFILL_BATCH = 1000


def upgrade() -> None:
    # Columns are only added, never altered: on SQLite, altering rebuilds the table, and
    # dropping the old one cascades into every row that points at a customer. So
    # public_id stays nullable in the schema (the model always sets it) and is unique
    # through an index, which SQLite builds in place.
    op.add_column("customer", sa.Column("public_id", sa.String(40), nullable=True))
    op.add_column("customer", sa.Column("anonymous", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    _backfill_public_ids()
    op.create_index("uq_customer_public_id", "customer", ["public_id"], unique=True)
    op.create_table(
        "customer_token_key",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.String(8), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("created_by", sa.String(254), nullable=False),
        sa.Column("retired_at", _TIME, nullable=True),
        sa.UniqueConstraint("tenant", "kid", name="uq_customer_token_key_kid"),
    )


def _backfill_public_ids() -> None:
    connection = op.get_bind()
    customer = sa.table("customer", sa.column("id", sa.Integer()),
                        sa.column("public_id", sa.String(40)))
    while True:
        ids = connection.execute(
            sa.select(customer.c.id).where(customer.c.public_id.is_(None))
            .order_by(customer.c.id).limit(_BACKFILL_BATCH)
        ).scalars().all()
        if not ids:
            return
        connection.execute(
            customer.update().where(customer.c.id == sa.bindparam("row_id"))
            .values(public_id=sa.bindparam("new_id")),
            [{"row_id": row_id,
              "new_id": f"{_PUBLIC_ID_PREFIX}{secrets.token_hex(_PUBLIC_ID_BYTES)}"}
             for row_id in ids],
        )


def downgrade() -> None:
    op.drop_table("customer_token_key")
    op.drop_index("uq_customer_public_id", table_name="customer")
    # Not in batch mode either: a rebuilt customer table would cascade (see upgrade).
    op.drop_column("customer", "anonymous")
    op.drop_column("customer", "public_id")
