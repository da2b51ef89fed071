"""A dry run as a marketer starts one from the console: of the saved scenario, with its
progress and then its report (what would have been sent, held, capped, suppressed, and a
sample journey step by step); of a draft in the editor, which stays unsaved; and seen,
not started, by an analyst."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import Locator, Page, expect

from cloud.db import session_scope
from cloud.scenarios.catalog import save_scenario
from cloud.simulation.jobs import SimulationRunner
from cloud.simulation.models import SimulationStatus
from tests.cloud.console.accessibility import violations
from tests.cloud.console.conftest import Console, screenshot, sign_in
from tests.cloud.simulation.history import CONFIG, SPEC, seed


def recorded_history(console: Console) -> None:
    """Three days of visits and orders that ended an hour ago, and the scenario saved."""
    start = datetime.now(UTC) - timedelta(days=3, hours=6)
    with session_scope(console.engine) as session:
        for event in seed(session, console.tenant, start=start):
            if event.at < datetime.now(UTC):
                event.apply(session, event.at)
        save_scenario(session, tenant=console.tenant, spec=SPEC, now=start)
        session.commit()


def worker(console: Console) -> SimulationRunner:
    return SimulationRunner(engine=console.engine, config=CONFIG, now=console.clock,
                            poll_interval_s=0.1)


def test_a_marketer_dry_runs_the_saved_scenario_and_reads_its_report(
    page: Page, console: Console
) -> None:
    recorded_history(console)
    sign_in(page, console, "marketer")
    page.goto(console.page_url("scenarios") + "?key=visit-dryer")
    dry_run = page.locator(".dry-run")
    dry_run.get_by_label("History").select_option("7")
    dry_run.get_by_role("button", name="Start dry run").click()
    expect(dry_run).to_contain_text("Waiting for a worker")
    assert worker(console).run_next() is SimulationStatus.DONE

    expect(dry_run.get_by_text("Journeys started")).to_be_visible()
    def table(name: str) -> Locator:
        return dry_run.get_by_role("table", name=name)

    expect(table("Messages per channel and variant")).to_contain_text("email")
    expect(table("Sends not made, or not at once")).to_contain_text("no consent")
    expect(table("Expected opens and conversions per channel")).to_contain_text("no sends yet")
    sample = dry_run.locator("details.sample-journey").first
    sample.locator("summary").click()
    expect(sample.get_by_role("listitem").first).to_be_visible()
    assert violations(page) == []
    screenshot(page, "scenario-dry-run")

    # An analyst reads the latest dry run; starting one is for those who edit scenarios.
    page.context.clear_cookies()
    sign_in(page, console, "analyst")
    page.goto(console.page_url("scenarios") + "?key=visit-dryer")
    expect(page.locator(".dry-run").get_by_text("Journeys started")).to_be_visible()
    expect(page.get_by_role("button", name="Start dry run")).to_have_count(0)


def test_a_draft_is_dry_run_from_the_editor_without_being_saved(
    page: Page, console: Console
) -> None:
    recorded_history(console)
    sign_in(page, console, "marketer")
    page.goto(console.page_url("scenarios") + "?key=visit-dryer")
    page.get_by_role("button", name="Edit").click()
    page.get_by_text("Dry run this draft before saving it").click()
    draft = page.locator(".draft-dry-run")
    expect(draft).to_contain_text("unsaved")
    draft.get_by_role("button", name="Start dry run").click()
    expect(draft).to_contain_text("Waiting for a worker")
    expect(draft.locator(".scenario-meta")).to_contain_text("draft")
    assert worker(console).run_next() is SimulationStatus.DONE
    expect(draft.get_by_text("Journeys started")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator(".scenario-meta").first).to_contain_text("version 1")
