"""Fresh PostgreSQL databases, dropped afterwards, on the server `admin_dsn` names: the
test suite's own (`tests.conftest.postgres_server` starts it and names it in
`SERVER_ENV`), or the machine's for benchmarks, which measure a durable server."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql

#: Names the server databases are created on (a libpq address of its `postgres`
#: database); set it to use another machine's server.
SERVER_ENV = "VITRINA_TEST_POSTGRES"
MACHINE_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_dsn() -> str:
    return os.environ.get(SERVER_ENV) or MACHINE_SERVER


def server_url() -> str:
    """The SQLAlchemy URL of the server, without a database."""
    return admin_dsn().rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)


def admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    dsn = admin_dsn()
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {dsn} ({error}); start it or set "
            f"{SERVER_ENV} to a server where databases may be created"
        ) from error


@contextlib.contextmanager
def fresh_database(prefix: str = "vitrina_test") -> Iterator[str]:
    """Create a uniquely named database; yield its SQLAlchemy URL; drop it (forcefully)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server_url()}/{name}"
    finally:
        with admin_connection() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
