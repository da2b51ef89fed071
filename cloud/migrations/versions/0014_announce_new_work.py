"""PostgreSQL announces new work itself: a statement that inserts scenario triggers wakes
the scenario stage, one that queues messages or webhooks wakes delivery
(`cloud.wakeups`). The notification goes out when the transaction commits, and never
after a rollback; repeats within one transaction are folded into one.

Done by the tables rather than by each writer: nothing that inserts can forget to
announce, and no writer spends a round trip on it. SQLite has no notifications (its
stages share one process and wake each other directly).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision: str | None = "0013"
branch_labels = None
depends_on = None

#: Which channel an insert into each table announces on (`cloud.wakeups.Channel`).
ANNOUNCED = {
    "scenario_trigger": "vitrina_triggers",
    "message": "vitrina_queued",
    "outbound_webhook": "vitrina_queued",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION vitrina_announce() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify(TG_ARGV[0], ''); RETURN NULL; END $$"
    )
    for table, channel in ANNOUNCED.items():
        op.execute(
            f"CREATE TRIGGER {table}_announce AFTER INSERT ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION vitrina_announce('{channel}')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ANNOUNCED:
        op.execute(f"DROP TRIGGER {table}_announce ON {table}")
    op.execute("DROP FUNCTION vitrina_announce()")
