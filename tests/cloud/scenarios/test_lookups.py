"""What send steps read, loaded per batch: stores of several visits, and the quiet hours
and zones their tenants set, in one query each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import Engine, event

from cloud.db import session_scope
from cloud.places.crud import put_store
from cloud.places.models import StoreCreate
from cloud.preferences.crud import put_preferences
from cloud.preferences.models import QuietWindow, TenantPreferencesUpdate
from cloud.preferences.precedence import NOTHING, OwnRules
from cloud.scenarios.lookups import Lookups
from cloud.settings import QuietHours

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


def test_the_own_rules_of_a_batch_s_tenants_are_read_in_one_query(engine: Engine) -> None:
    with session_scope(engine) as session:
        put_preferences(session, tenant="t1", now=NOW, data=TenantPreferencesUpdate(
            quiet_hours=QuietWindow(start=time(22), end=time(8)), time_zone="Europe/Lisbon"))
        put_preferences(session, tenant="t2", now=NOW,
                        data=TenantPreferencesUpdate(quiet_hours="off"))
        session.commit()

        lookups = Lookups(session, now=NOW)
        with counted(engine) as statements:
            lookups.preload_tenant_rules(["t1", "t2", "t3", "t1"])
            rules = {tenant: lookups.tenant_rules(tenant) for tenant in ("t1", "t2", "t3")}
            lookups.preload_tenant_rules(["t2"])  # loaded already: no query

        assert rules == {
            "t1": OwnRules(quiet_hours=QuietHours(start=time(22), end=time(8)),
                           time_zone="Europe/Lisbon"),
            "t2": OwnRules(quiet_hours="off"),
            "t3": NOTHING,
        }
        assert len(statements) == 1
