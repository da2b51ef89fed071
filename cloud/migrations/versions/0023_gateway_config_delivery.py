"""The worker delivers gateway configs the broker could not take when they were saved,
and re-publishes those a gateway has not acknowledged: per gateway, its publishing
attempts, when it may try next (a back-off, or a worker's lease), and the last refusal.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision: str | None = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_registry") as table:
        table.add_column(sa.Column("config_attempts", sa.Integer(), nullable=False,
                                   server_default="0"))
        table.add_column(sa.Column("config_next_attempt_at", sa.DateTime(timezone=True),
                                   nullable=True))
        table.add_column(sa.Column("config_publish_error", sa.String(500), nullable=True))
    op.create_index("ix_gateway_registry_config_next_attempt_at", "gateway_registry",
                    ["config_next_attempt_at"])
    # Configs saved before this revision: due now, so the worker sends those the broker
    # never took and watches the others for an acknowledgement.
    op.execute("UPDATE gateway_registry SET config_next_attempt_at = config_saved_at "
               "WHERE config IS NOT NULL AND revoked_at IS NULL")


def downgrade() -> None:
    op.drop_index("ix_gateway_registry_config_next_attempt_at", table_name="gateway_registry")
    with op.batch_alter_table("gateway_registry") as table:
        table.drop_column("config_publish_error")
        table.drop_column("config_next_attempt_at")
        table.drop_column("config_attempts")
