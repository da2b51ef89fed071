"""The backfill in SQL (PostgreSQL) builds the same roll-ups as the worker's Python, row
for row, for random events."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from cloud.db import make_engine, session_scope
from cloud.presence.crud import insert_events
from cloud.presence.rollup_sql import rebuild_sql
from cloud.presence.rollups import rebuild_python
from tests.cloud.conftest import postgres_copy
from tests.cloud.factories import START
from tests.cloud.presence.test_rollups import DAY0, DAYS, presence, snapshot, visit

_tenants = itertools.count()


@pytest.fixture
def postgres(schema_templates: dict[str, str]) -> Iterator[Engine]:
    with postgres_copy(schema_templates) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def both_ways(engine: Engine, tenant: str, *, days: int = DAYS) -> tuple[object, object]:
    """The roll-ups of the days as the SQL backfill builds them, then as the Python does."""
    since, until = DAY0.date(), DAY0.date() + timedelta(days=days)
    with session_scope(engine) as session:
        rebuild_sql(session, tenant=tenant, since=since, until=until)
    by_sql = snapshot(engine, tenant)
    with session_scope(engine) as session:
        rebuild_python(session, tenant=tenant, since=since, until=until)
        session.commit()
    return by_sql, snapshot(engine, tenant)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_the_sql_backfill_builds_what_the_worker_builds(
    postgres: Engine, data: st.DataObject
) -> None:
    tenant = f"q{next(_tenants)}"
    events = data.draw(presence(tenant))
    with session_scope(postgres) as session:
        insert_events(session, events=events, received_at=START)
        session.commit()
    by_sql, by_python = both_ways(postgres, tenant)
    assert by_sql == by_python


def test_a_visit_longer_than_the_read_ahead_is_read_whole(postgres: Engine) -> None:
    """Sightings chained for five hours across midnight: the visit of 22:00 is read to
    its end, past the day after, and counted once."""
    tenant = "long"
    chain = [visit(tenant, 1, timedelta(hours=22, minutes=4 * n), 5, seq=n) for n in range(75)]
    with session_scope(postgres) as session:
        insert_events(session, events=chain, received_at=START)
        session.commit()
    by_sql, by_python = both_ways(postgres, tenant, days=1)
    assert by_sql == by_python
    with postgres.connect() as connection:
        rows = connection.execute(text(
            "SELECT devices, dwell_over_60m, median_dwell_s FROM footfall_day "
            "WHERE tenant = 'long' AND zone = ''")).all()
    assert [tuple(row) for row in rows] == [(1, 1, (74 * 4 + 5) * 60.0)]
