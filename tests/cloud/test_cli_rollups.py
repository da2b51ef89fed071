"""`vitrina-cloud rollups rebuild` as an operator runs it after an upgrade: by exit status
and message, on SQLite (the worker's Python) and PostgreSQL (SQL)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import Engine, text

from cloud.db import session_scope
from cloud.presence.analytics import footfall, footfall_from_events
from cloud.presence.crud import insert_events
from tests.cloud.factories import START
from tests.cloud.presence.test_rollups import DAY0, visit
from tests.cloud.test_cli import invoke


def test_a_backfill_rolls_up_what_was_stored_before(
    engine: Engine, migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [visit(tenant, n, timedelta(days=n % 2, hours=9 + n), 1 + 4 * n, seq=n,
                    store=f"s{n % 3}") for n in range(8)]
    with session_scope(engine) as session:  # stored before the upgrade: nothing marked
        insert_events(session, events=events, received_at=START)
        session.commit()
    since, until = DAY0, DAY0 + timedelta(days=2)
    run = partial(invoke, database_url=migrated_url, tenant=tenant, monkeypatch=monkeypatch)
    done = run(["rollups", "rebuild", "--tenant", tenant, "--since", DAY0.date().isoformat(),
                "--until", until.date().isoformat()])
    assert done.exit_code == 0, done.output
    assert f"rebuilt 6 store days of tenant {tenant}" in done.stdout
    with session_scope(engine) as session:
        rolled = footfall(session, tenant=tenant, since=since, until=until, by_zone=True)
        raw = footfall_from_events(session, tenant=tenant, since=since, until=until,
                                   by_zone=True)
    assert rolled == raw
    assert sum(row.devices for row in rolled) == 8


@pytest.mark.parametrize(("arguments", "message"), [
    (["--since", "2026-11-23", "--until", "2026-11-23"], "--until must be after --since"),
    (["--since", "23/11/2026", "--until", "2026-11-24"], "--since must be a day as YYYY-MM-DD"),
])
def test_a_bad_range_is_refused(
    engine: Engine, migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch,
    arguments: list[str], message: str,
) -> None:
    refused = invoke(["rollups", "rebuild", "--tenant", tenant, *arguments],
                     database_url=migrated_url, tenant=tenant, monkeypatch=monkeypatch)
    assert refused.exit_code == 2
    assert message in refused.output


def test_an_unknown_tenant_and_an_old_schema_are_refused(
    engine: Engine, migrated_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = partial(invoke, database_url=migrated_url, tenant=tenant, monkeypatch=monkeypatch)
    days = ["--since", "2026-11-23", "--until", "2026-11-24"]
    unknown = run(["rollups", "rebuild", "--tenant", "elsewhere", *days])
    assert unknown.exit_code == 2
    assert "tenant 'elsewhere' is not configured" in unknown.output
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE footfall_day"))
    old = run(["rollups", "rebuild", "--tenant", tenant, *days])
    assert old.exit_code == 1
    assert "run `vitrina-cloud migrate`" in old.output
