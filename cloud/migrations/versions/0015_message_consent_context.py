"""Messages carry what the send-time consent check needs: whether a store visit or a
geofence started them (`location_based`: they need consent to location-based marketing
as of sending) and, for a transactional message, when its consent request began
(`consent_requested_at`: a "no" since then stops it). The delivery worker used to read
both from the scenario's journey; it now reads only the message.

Rows queued before this migration get both from their journey; a message whose journey
is gone keeps false and null, which is what the worker assumed for it before (no
location consent needed, the request began when the message was made).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision: str | None = "0014"
branch_labels = None
depends_on = None

#: The trigger kinds of store visits and geofences (cloud.triggers.LOCATION_KINDS as of
#: this revision; a migration keeps its own copy, as the code may change).
LOCATION_KINDS = (
    "presence.enter", "presence.dwell", "presence.exit",
    "geofence.enter", "geofence.dwell", "geofence.exit",
)


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(
            sa.Column("location_based", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("consent_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    message = sa.table(
        "message", sa.column("journey_id", sa.Integer()), sa.column("transactional", sa.Boolean()),
        sa.column("location_based", sa.Boolean()),
        sa.column("consent_requested_at", sa.DateTime(timezone=True)),
    )
    journey = sa.table(
        "journey", sa.column("id", sa.Integer()), sa.column("entry_kind", sa.String()),
        sa.column("started_at", sa.DateTime(timezone=True)),
    )
    of_message = journey.c.id == message.c.journey_id
    op.execute(
        message.update()
        .where(message.c.journey_id.is_not(None))
        .values(
            location_based=sa.exists().where(
                of_message, journey.c.entry_kind.in_(LOCATION_KINDS)
            ),
            consent_requested_at=sa.case(
                (message.c.transactional,
                 sa.select(journey.c.started_at).where(of_message).scalar_subquery()),
                else_=sa.null(),
            ),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_column("consent_requested_at")
        batch.drop_column("location_based")
