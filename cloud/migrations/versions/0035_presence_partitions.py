"""Presence events partitioned by day of last_seen on PostgreSQL; unique (event_id, last_seen).

An existing installation's table is converted with its rows: the old table is renamed
aside; the partitioned one is created with a partition for every day its rows were last
seen on, a week ahead, and a default partition; the rows are copied with their ids, the
id sequence handed over, and the old table dropped. The copy rewrites every row once, in
the migration's transaction: on a large installation run it in a quiet hour
(docs/scaling.md says how long a million rows take). SQLite keeps a plain table; only its
unique key changes (`cloud.presence.models.EVENT_UNIQUE_KEY` and
`cloud.presence.partitions` say why).

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-07
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision: str | None = "0034"
branch_labels = None
depends_on = None

_TABLE = "presence_event"
_OLD = "presence_event_unpartitioned"
_SEQUENCE = "presence_event_id_seq"
_UNIQUE = "uq_presence_event_event_id_last_seen"
#: Days made ahead by the migration; the worker keeps `ingest.partition_days_ahead` after.
_DAYS_AHEAD = 7
_INDEXES = {
    "ix_presence_event_store_time": ("tenant", "store", "first_seen"),
    "ix_presence_event_pseudonym": ("tenant", "pseudonym", "first_seen"),
    "ix_presence_event_tenant_last_seen": ("tenant", "last_seen"),
}
_COLUMNS = (
    "id, event_id, tenant, store, gateway, zone, pseudonym, key_id, scope, kind, randomized,"
    " transition, rssi, first_seen, last_seen, dwell_s, sightings, received_at"
)
_COLUMN_DDL = """
    id bigint NOT NULL DEFAULT nextval('presence_event_id_seq'),
    event_id varchar(32) NOT NULL, tenant varchar(64) NOT NULL, store varchar(64) NOT NULL,
    gateway varchar(64) NOT NULL, zone varchar(64) NOT NULL, pseudonym varchar(64) NOT NULL,
    key_id varchar(16) NOT NULL, scope varchar(8) NOT NULL, kind varchar(24) NOT NULL,
    randomized boolean NOT NULL, transition varchar(8) NOT NULL, rssi float NOT NULL,
    first_seen timestamptz NOT NULL, last_seen timestamptz NOT NULL, dwell_s float NOT NULL,
    sightings integer NOT NULL, received_at timestamptz NOT NULL
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _to_partitioned()
    else:
        _rekey_sqlite(unique=(sa.UniqueConstraint("event_id", "last_seen", name=_UNIQUE),))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _to_plain()
    else:
        _rekey_sqlite(unique=(sa.UniqueConstraint("event_id"),))


def _partition_name(day: date) -> str:
    return f"{_TABLE}_p{day:%Y%m%d}"


def _to_partitioned() -> None:
    bind = op.get_bind()
    _set_aside()
    op.execute(
        f"CREATE TABLE {_TABLE} ({_COLUMN_DDL}, PRIMARY KEY (id, last_seen), "
        f"CONSTRAINT {_UNIQUE} UNIQUE (event_id, last_seen)) PARTITION BY RANGE (last_seen)"
    )
    op.execute(f"ALTER SEQUENCE {_SEQUENCE} OWNED BY {_TABLE}.id")
    for name, columns in _INDEXES.items():
        op.create_index(name, _TABLE, list(columns))
    # Rows of days without a partition wait here; the worker's upkeep moves them into
    # their own (cloud.presence.partitions).
    op.execute(f"CREATE TABLE {_TABLE}_default PARTITION OF {_TABLE} DEFAULT")
    today = datetime.now(UTC).date()
    days = {today + timedelta(days=offset) for offset in range(_DAYS_AHEAD + 1)}
    days.update(bind.execute(sa.text(
        f"SELECT DISTINCT (last_seen AT TIME ZONE 'UTC')::date FROM {_OLD}"
    )).scalars())
    for day in sorted(days):
        lower = datetime(day.year, day.month, day.day, tzinfo=UTC)
        op.execute(
            f"CREATE TABLE {_partition_name(day)} PARTITION OF {_TABLE} "
            f"FOR VALUES FROM ('{lower.isoformat()}') "
            f"TO ('{(lower + timedelta(days=1)).isoformat()}')"
        )
    op.execute(f"INSERT INTO {_TABLE} ({_COLUMNS}) SELECT {_COLUMNS} FROM {_OLD}")
    op.execute(f"DROP TABLE {_OLD}")


def _to_plain() -> None:
    _set_aside()
    op.execute(
        f"CREATE TABLE {_TABLE} ({_COLUMN_DDL}, PRIMARY KEY (id), UNIQUE (event_id))"
    )
    op.execute(f"ALTER SEQUENCE {_SEQUENCE} OWNED BY {_TABLE}.id")
    for name, columns in _INDEXES.items():
        op.create_index(name, _TABLE, list(columns))
    op.execute(f"INSERT INTO {_TABLE} ({_COLUMNS}) SELECT {_COLUMNS} FROM {_OLD}")
    op.execute(f"DROP TABLE {_OLD}")  # drops its partitions with it


def _set_aside() -> None:
    """Rename the current table and its indexes aside (index names are per schema), and
    free the id sequence from it so dropping it later keeps the sequence."""
    op.execute(f"ALTER SEQUENCE {_SEQUENCE} OWNED BY NONE")
    names = op.get_bind().execute(sa.text(
        "SELECT indexname FROM pg_indexes WHERE tablename = :table "
        "AND schemaname = current_schema()"
    ), {"table": _TABLE}).scalars().all()
    op.execute(f"ALTER TABLE {_TABLE} RENAME TO {_OLD}")
    for name in names:  # the key's and the unique constraint's indexes too
        op.execute(f"ALTER INDEX {name} RENAME TO {name[:55]}_old")


def _rekey_sqlite(*, unique: tuple[sa.UniqueConstraint, ...]) -> None:
    """SQLite cannot change a table's constraints in place: a new table, the rows, a swap."""
    time = sa.DateTime(timezone=True)
    op.create_table(
        f"{_TABLE}_new",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("store", sa.String(64), nullable=False),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("randomized", sa.Boolean(), nullable=False),
        sa.Column("transition", sa.String(8), nullable=False),
        sa.Column("rssi", sa.Float(), nullable=False),
        sa.Column("first_seen", time, nullable=False),
        sa.Column("last_seen", time, nullable=False),
        sa.Column("dwell_s", sa.Float(), nullable=False),
        sa.Column("sightings", sa.Integer(), nullable=False),
        sa.Column("received_at", time, nullable=False),
        *unique,
    )
    op.execute(f"INSERT INTO {_TABLE}_new ({_COLUMNS}) SELECT {_COLUMNS} FROM {_TABLE}")
    for name in _INDEXES:
        op.drop_index(name, table_name=_TABLE)
    op.drop_table(_TABLE)
    op.rename_table(f"{_TABLE}_new", _TABLE)
    for name, columns in _INDEXES.items():
        op.create_index(name, _TABLE, list(columns))
