"""What send steps read, loaded per batch: stores of several visits in one query."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event

from cloud.db import session_scope
from cloud.places.crud import put_store
from cloud.places.models import StoreCreate
from cloud.scenarios.lookups import Lookups

NOW = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    """The statements run on `engine` meanwhile."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_stores_of_a_batch_are_read_in_one_query_per_tenant(engine: Engine) -> None:
    with session_scope(engine) as session:
        for tenant, key, name in (("t1", "centro", "Centro"), ("t1", "norte", "Norte"),
                                  ("t2", "centro", "Otro centro")):
            put_store(session, tenant=tenant, key=key, now=NOW,
                      data=StoreCreate(name=name, time_zone="Europe/Madrid"))
        session.commit()

        lookups = Lookups(session, now=NOW)
        with counted(engine) as statements:
            lookups.preload_stores([("t1", "centro"), ("t1", "norte"), ("t1", "gone"),
                                    ("t2", "centro"), ("t1", "centro")])
            names = {
                (tenant, key): (store.name if (store := lookups.store(tenant, key)) else None)
                for tenant, key in (("t1", "centro"), ("t1", "norte"), ("t1", "gone"),
                                    ("t2", "centro"))
            }
            lookups.preload_stores([("t1", "norte")])  # loaded already: no query

        assert names == {("t1", "centro"): "Centro", ("t1", "norte"): "Norte",
                         ("t1", "gone"): None, ("t2", "centro"): "Otro centro"}
        assert len(statements) == 2  # one per tenant
