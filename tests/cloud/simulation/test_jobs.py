"""Dry runs over HTTP, as a shop's marketer runs them: asked for (202), taken by a worker,
read back with progress and report; a draft checked as a save checks it; a job that fails
says why; a job whose worker went away is taken over; other tenants' runs are not found."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from cloud.api import create_app
from cloud.db import session_scope
from cloud.simulation import jobs
from cloud.simulation.jobs import SIMULATION_TABLE, SimulationRunner
from cloud.simulation.models import SimulationStatus
from tests.cloud.conftest import postgres_copy
from tests.cloud.factories import bearer, cloud_settings, issue_key
from tests.cloud.simulation.history import CONFIG, END, SPEC_DOCUMENT, seed
from tests.docs.snippets import snippet

NOW = END + timedelta(hours=1)


@pytest.fixture
def migrated_url(schema_templates: dict[str, str]) -> Iterator[str]:
    """PostgreSQL only, as deployed: the jobs are claimed with SKIP LOCKED there. (The dry
    run itself is checked on both kinds of database in test_dry_run.py.)"""
    with postgres_copy(schema_templates) as url:
        yield url


@pytest.fixture
def client(engine: Engine, migrated_url: str, tenant: str) -> Iterator[TestClient]:
    """The tenant's admin, over three days of recorded history."""
    with session_scope(engine) as session:
        for event in seed(session, tenant):
            event.apply(session, event.at)
        session.commit()
    settings = cloud_settings(tenant=tenant, database_url=migrated_url)
    app = create_app(settings, engine=engine, now=lambda: NOW)
    with TestClient(app, headers=bearer(issue_key(engine, tenant=tenant))) as test_client:
        yield test_client


def runner(engine: Engine) -> SimulationRunner:
    return SimulationRunner(engine=engine, config=CONFIG, now=lambda: NOW, poll_interval_s=0.05)


def test_a_stored_scenario_runs_over_its_history_and_reports(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    saved = client.put(f"/tenants/{tenant}/scenarios/visit-dryer", json=SPEC_DOCUMENT)
    assert saved.status_code == 200, saved.text
    asked = client.post(f"/tenants/{tenant}/scenarios/visit-dryer/simulations",
                        json={"days": 4, "sample": 3})
    assert asked.status_code == 202, asked.text
    job = asked.json()
    assert (job["status"], job["scenario_version"], job["report"]) == ("queued", 1, None)
    assert job["since"] == (NOW - timedelta(days=4)).isoformat().replace("+00:00", "Z")

    assert runner(engine).run_next() is SimulationStatus.DONE
    done = client.get(f"/tenants/{tenant}/simulations/{job['id']}").json()
    assert (done["status"], done["progress"]) == ("done", 1.0)
    assert done["triggers_done"] == done["triggers_total"] > 0
    report = done["report"]
    assert report["entries"] > 10
    assert report["held_out"] > 0
    assert set(report["entries_by_variant"]) == {"a", "b"}
    assert report["holds"] > 0
    assert report["suppressed"]["no_consent"] > 0
    assert sum(row["sends"] for row in report["sends"]) == report["coupons_issued"] > 0
    assert report["exits"]["completed"] > 0
    assert len(report["sample"]) == 3
    assert report["sample"][0]["steps"]
    # No send in the tenant's history: nothing to learn open or conversion rates from.
    assert {row["basis"] for row in report["expected"]} == {"none"}
    assert report["expected_conversions"] is None
    listed = client.get(f"/tenants/{tenant}/scenarios/visit-dryer/simulations").json()
    assert [row["id"] for row in listed] == [job["id"]]
    assert runner(engine).run_next() is None  # nothing else queued


def test_a_draft_runs_without_being_saved_and_is_checked_as_a_save_is(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    url = f"/tenants/{tenant}/scenarios/visit-dryer/simulations"
    unknown = client.post(url, json={})
    assert unknown.status_code == 404, unknown.text
    assert "send a draft" in unknown.json()["detail"]
    wrong: dict[str, Any] = {**SPEC_DOCUMENT, "steps": [
        {**SPEC_DOCUMENT["steps"][0], "template": "dryr"}, *SPEC_DOCUMENT["steps"][1:]]}
    refused = client.post(url, json={"spec": wrong})
    assert refused.status_code == 422, refused.text
    (problem,) = refused.json()["detail"]
    assert problem["loc"][:3] == ["body", "spec", "steps"]
    assert "dryer" in problem["msg"]  # did you mean
    future = client.post(url, json={"spec": SPEC_DOCUMENT,
                                    "until": (NOW + timedelta(days=1)).isoformat()})
    assert future.status_code == 422, future.text
    other_key = client.post(f"/tenants/{tenant}/scenarios/other/simulations",
                            json={"spec": SPEC_DOCUMENT})
    assert other_key.status_code == 422, other_key.text
    too_long = client.post(url, json={"spec": SPEC_DOCUMENT, "days": 91})
    assert too_long.status_code == 422, too_long.text

    asked = client.post(url, json={"spec": SPEC_DOCUMENT, "days": 4})
    assert asked.status_code == 202, asked.text
    assert asked.json()["scenario_version"] is None
    assert runner(engine).run_next() is SimulationStatus.DONE
    assert client.get(f"/tenants/{tenant}/scenarios/visit-dryer").status_code == 404


def test_a_failed_run_says_why_and_the_worker_goes_on(
    client: TestClient, engine: Engine, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"/tenants/{tenant}/scenarios/visit-dryer/simulations"
    first = client.post(url, json={"spec": SPEC_DOCUMENT}).json()
    second = client.post(url, json={"spec": SPEC_DOCUMENT, "days": 4}).json()

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("scratch database full")

    monkeypatch.setattr(jobs, "simulate", broken)
    assert runner(engine).run_next() is SimulationStatus.FAILED
    monkeypatch.undo()
    assert runner(engine).run_next() is SimulationStatus.DONE
    failed = client.get(f"/tenants/{tenant}/simulations/{first['id']}").json()
    assert (failed["status"], failed["error"]) == ("failed", "RuntimeError: scratch database full")
    assert client.get(f"/tenants/{tenant}/simulations/{second['id']}").json()["status"] == "done"


def test_a_run_whose_worker_went_away_is_taken_over(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    url = f"/tenants/{tenant}/scenarios/visit-dryer/simulations"
    job = client.post(url, json={"spec": SPEC_DOCUMENT, "days": 4}).json()
    with engine.begin() as connection:  # taken by a worker that then died
        connection.execute(update(SIMULATION_TABLE).values(
            status="running", heartbeat_at=NOW - jobs.STALE_AFTER / 2))
    assert runner(engine).run_next() is None  # still within its lease
    with engine.begin() as connection:
        connection.execute(update(SIMULATION_TABLE).values(
            heartbeat_at=NOW - jobs.STALE_AFTER - timedelta(seconds=1)))
    assert runner(engine).run_next() is SimulationStatus.DONE
    assert client.get(f"/tenants/{tenant}/simulations/{job['id']}").json()["status"] == "done"


def test_another_tenants_run_is_not_found(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    job = client.post(f"/tenants/{tenant}/scenarios/visit-dryer/simulations",
                      json={"spec": SPEC_DOCUMENT}).json()
    other = issue_key(engine, tenant="elsewhere")
    found = client.get(f"/tenants/elsewhere/simulations/{job['id']}", headers=bearer(other))
    assert found.status_code == 404, found.text


def test_the_runner_loop_runs_queued_jobs_until_stopped(
    client: TestClient, engine: Engine, tenant: str
) -> None:
    job = client.post(f"/tenants/{tenant}/scenarios/visit-dryer/simulations",
                      json={"spec": SPEC_DOCUMENT, "days": 4}).json()

    async def run_until_done() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(runner(engine).run(stop))
        for _ in range(600):
            status = client.get(f"/tenants/{tenant}/simulations/{job['id']}").json()["status"]
            if status == "done":
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(loop, timeout=5)

    asyncio.run(run_until_done())
    assert client.get(f"/tenants/{tenant}/simulations/{job['id']}").json()["status"] == "done"


def test_the_documented_request_starts_a_dry_run(client: TestClient, tenant: str) -> None:
    saved = client.put(f"/tenants/{tenant}/scenarios/visit-dryer", json=SPEC_DOCUMENT)
    assert saved.status_code == 200, saved.text
    body = json.loads(snippet("docs/scenarios.md", "dry-run-request").text)
    asked = client.post(f"/tenants/{tenant}/scenarios/visit-dryer/simulations", json=body)
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "queued"
