"""Database access: engines, sessions, waiting for the server, and schema migrations.

SQLite is the embedded default (the demo, a single small shop); PostgreSQL through
psycopg 3 is production. The schema is owned by Alembic from the first table on:
`migrate(url)` is the only way tables come into being, in tests as in production.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, DateTime, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: A PostgreSQL restart or failover takes seconds to a minute; a worker that gives
#: up sooner would turn a routine restart into an outage.
DATABASE_WAIT_S = 120.0
#: SQLite waits this long for another writer (a second process) instead of failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both databases.

    PostgreSQL keeps the zone (timestamptz); SQLite keeps none, so values are
    normalised to UTC before writing and tagged UTC again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (the only PostgreSQL driver installed)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, *, echo: bool = False, pre_ping: bool = True) -> Engine:
    """An engine for `url`. With `pre_ping` (PostgreSQL), every checkout from the pool
    first asks the server whether the connection still works: a round trip per
    transaction, worth it where a dropped connection would fail a request. Workers run
    without it (`worker_engine`)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, echo=echo, pool_pre_ping=pre_ping, pool_size=5, max_overflow=5,
        # No server-side prepared statements: what a transaction-pooling PgBouncer in
        # front of PostgreSQL requires; with the hot statements' text fixed (`cloud.bulk`)
        # they made no clear difference to latency (docs/benchmarks/latency.md).
        connect_args={"connect_timeout": 5, "prepare_threshold": None},
    )


def worker_engine(url: str) -> Engine:
    """An engine for a worker: no ping before each transaction. A worker's transactions
    are short and many (a stage's round is one to three of them, several times a
    second), so a ping each would add a round trip to every one. What the ping guards
    against, a connection the server dropped (a restart, a failover), costs a worker one
    failed transaction instead: SQLAlchemy then discards every pooled connection made
    before, and each stage already treats an unreachable database as passing (ingest
    waits and writes the batch again, a scenario round is tried again, delivery retries
    its record of what it sent: `DeliveryWorker.run_once`)."""
    return make_engine(url, pre_ping=False)


DialectInsert = postgresql.Insert | sqlite.Insert


def dialect_insert(connection: Connection | Session, table: Table) -> DialectInsert:
    """An INSERT that supports `on_conflict_*` on the connection's dialect."""
    bind = connection.get_bind() if isinstance(connection, Session) else connection
    return dialect_insert_for(bind.dialect.name, table)


def dialect_insert_for(name: str, table: Table) -> DialectInsert:
    """`dialect_insert` for the dialect called `name`."""
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"database dialect {name!r} is not supported")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def is_transient(error: BaseException) -> bool:
    """Database unreachable, restarting or busy (retry later), as opposed to refusing the data."""
    return isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and bool(error.connection_invalidated)
    )


def wait_for_database(engine: Engine, *, timeout_s: float = DATABASE_WAIT_S) -> None:
    """Block until the database answers, retrying with backoff; raise after `timeout_s`."""

    @retry(
        retry=retry_if_exception_type(OperationalError),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(timeout_s),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    def _attempt() -> None:
        ping(engine)

    _attempt()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the schema at `url` to `revision` (head by default); idempotent."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def session_scope(engine: Engine) -> Session:
    """A session whose objects stay readable after commit (API responses read them)."""
    return Session(engine, expire_on_commit=False)
