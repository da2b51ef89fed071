"""`cloud.service`: `settle_garbage_collector`, in a process of its own (it changes the
collector for good): what exists at start-up is frozen, collections come less often; a
worker runs the loops of its stages, listening for work from stages elsewhere, and only
where the database can wake them (the processes themselves: tests/cloud/test_cli.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cloud.db import make_engine, utc_now
from cloud.service import (
    ALL_STAGES,
    GC_OLDER_THRESHOLD,
    GC_YOUNG_THRESHOLD,
    Stage,
    StagesApartError,
    check_stages,
    workers,
)
from cloud.settings import Settings
from cloud.wakeups import APPLICATION_NAME
from tests.support.postgres import fresh_database


def test_the_collector_is_settled_after_start_up() -> None:
    script = (
        "import gc\n"
        "from cloud.service import settle_garbage_collector\n"
        "assert gc.get_freeze_count() == 0\n"
        "settle_garbage_collector()\n"
        "print(gc.get_freeze_count() > 0, *gc.get_threshold())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    frozen, young, older, oldest = result.stdout.split()
    assert frozen == "True"
    assert (int(young), int(older), int(oldest)) == (
        GC_YOUNG_THRESHOLD, GC_OLDER_THRESHOLD, GC_OLDER_THRESHOLD
    )


@pytest.mark.parametrize(("stages", "loops"), [
    (ALL_STAGES, {"consumer", "scenarios", "delivery"}),
    (frozenset({Stage.INGEST}), {"consumer"}),
    (frozenset({Stage.SCENARIOS}), {"scenarios"}),
    (frozenset({Stage.SCENARIOS, Stage.DELIVERY}), {"scenarios", "delivery"}),
])
def test_a_worker_runs_the_loops_of_its_stages(
    stages: frozenset[Stage], loops: set[str], tmp_path: Path
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'vitrina.db'}")
    engine = make_engine(settings.database_url)
    with workers(settings, engine=engine, now=utc_now, stages=stages) as running:
        present = {name for name in ("consumer", "scenarios", "delivery")
                   if getattr(running, name) is not None}
    engine.dispose()
    assert present == loops


@pytest.mark.parametrize(("stages", "listens"), [
    (ALL_STAGES, False),
    (frozenset({Stage.INGEST}), False),
    (frozenset({Stage.SCENARIOS}), True),
    (frozenset({Stage.DELIVERY}), True),
])
def test_a_stage_apart_from_the_one_before_listens_for_its_work(
    stages: frozenset[Stage], listens: bool
) -> None:
    """On PostgreSQL a stage whose feeder runs in another process listens for its
    announcements (`cloud.wakeups`); with its feeder here it is woken directly."""
    with fresh_database("vitrina_stages") as url:
        engine = make_engine(url)
        try:
            with workers(Settings(database_url=url), engine=engine, now=utc_now,
                         stages=stages):
                assert wait_for_listener(engine, connected=True,
                                         within_s=5 if listens else 0.5) is listens
            # A backend leaves pg_stat_activity a moment after its client hangs up.
            assert wait_for_listener(engine, connected=False, within_s=5)
        finally:
            engine.dispose()


def wait_for_listener(engine: Engine, *, connected: bool, within_s: float) -> bool:
    """Whether the listener reached the wanted state within the time given."""
    deadline = time.monotonic() + within_s
    while listener_connected(engine) is not connected:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def listener_connected(engine: Engine) -> bool:
    """Whether a listener is connected to this test's own database (other tests'
    workers, in the other test process, listen on theirs)."""
    with engine.connect() as connection:
        return bool(connection.execute(
            text("SELECT count(*) FROM pg_stat_activity"
                 " WHERE application_name = :name AND datname = current_database()"),
            {"name": APPLICATION_NAME},
        ).scalar())


@pytest.mark.parametrize("stages", [
    frozenset({Stage.INGEST}),
    frozenset({Stage.SCENARIOS, Stage.DELIVERY}),
])
def test_stages_apart_are_refused_where_nothing_wakes_them(stages: frozenset[Stage]) -> None:
    with pytest.raises(StagesApartError, match="needs PostgreSQL"):
        check_stages("sqlite:///./vitrina.db", stages)
    check_stages("sqlite:///./vitrina.db", ALL_STAGES)
    check_stages("postgresql://vitrina@db/vitrina", stages)
    check_stages("postgresql+psycopg://vitrina@db/vitrina", stages)
