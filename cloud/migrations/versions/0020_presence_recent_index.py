"""An index on presence events by tenant and last sighting: the live page asks which
devices were seen in the last minutes, which no other index answers without reading a
tenant's whole history.

On PostgreSQL the index is built CONCURRENTLY (outside the migration's transaction), so
a deployment with a large presence table keeps ingesting while it is built.

Revision ID: 0020
Revises: 0017
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision: str | None = "0018"
branch_labels = None
depends_on = None

INDEX = "ix_presence_event_tenant_last_seen"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(INDEX, "presence_event", ["tenant", "last_seen"],
                            postgresql_concurrently=True, if_not_exists=True)
        return
    op.create_index(INDEX, "presence_event", ["tenant", "last_seen"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="presence_event")
