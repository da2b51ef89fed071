"""A fresh PostgreSQL database per test session, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql

#: The server the suite creates its databases on; override for another machine.
ADMIN_DSN = os.environ.get("VITRINA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {ADMIN_DSN} ({error}); start it or set "
            "VITRINA_TEST_POSTGRES to a server where the suite may create databases"
        ) from error


@contextlib.contextmanager
def fresh_database(prefix: str = "vitrina_test") -> Iterator[str]:
    """Create a uniquely named database; yield its SQLAlchemy URL; drop it (forcefully)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with admin_connection() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
