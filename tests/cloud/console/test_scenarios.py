"""The scenarios page as a marketer uses it: a scenario built through the form, refused
with the problem shown at its step, fixed, saved and seen as a flow; paused and active
again; a spend condition in one currency; its report with real journeys and messages;
and read-only for an analyst."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import Locator, Page, expect
from sqlmodel import select

from cloud.db import session_scope
from cloud.messages.models import Message
from cloud.scenarios.catalog import get_scenario, save_scenario
from cloud.scenarios.spec import ScenarioSpec
from tests.cloud.console.accessibility import violations
from tests.cloud.console.conftest import Console, screenshot, sign_in
from tests.cloud.console.seeding import reported_scenario, run_journeys, seed_template


def step(page: Page, number: int) -> Locator:
    return page.get_by_role("group", name=f"Step {number}:")


def add_step(page: Page, kind: str) -> None:
    page.get_by_label("New step").select_option(label=kind)
    page.get_by_role("button", name="Add step").click()


def test_a_marketer_builds_a_scenario_with_a_wait_and_a_branch(
    page: Page, console: Console
) -> None:
    seed_template(console)
    sign_in(page, console, "marketer")
    page.goto(console.page_url("scenarios"))
    page.get_by_role("link", name="New scenario").click()
    page.get_by_label("Key", exact=True).fill("cart")
    page.get_by_label("Name", exact=True).fill("Cart reminder")
    page.get_by_label("Starts when the customer").select_option("cart.abandoned")
    add_step(page, "Wait")
    step(page, 1).get_by_label("Wait for", exact=True).fill("15")
    step(page, 1).get_by_label("Wait for unit").select_option("minutes")
    add_step(page, "Wait for an event (yes / no)")
    bought = step(page, 2)
    bought.get_by_label("Event").select_option("order.created")
    bought.get_by_label("If it happens (yes)").select_option(label="End the journey")
    add_step(page, "Send a message")
    step(page, 3).get_by_label("Template", exact=True).fill("cart")
    page.get_by_role("button", name="Save scenario").click()

    # The timeout was left empty: the problem is shown at the wait for the order.
    expect(page.get_by_role("alert")).to_contain_text(
        "Step 2 (wait-for-2) \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} timeout")
    expect(bought.get_by_role("list", name="Problems of step 2")).to_contain_text(
        "timeout: Field required")
    expect(step(page, 1).get_by_role("list")).to_have_count(0)
    preview = page.get_by_role("complementary", name="Flow preview")
    expect(preview.get_by_role("button", name="Edit step 2. ")).to_contain_text("1 problem")
    assert violations(page) == []
    bought.get_by_label("Timeout", exact=True).fill("1")
    bought.get_by_label("Timeout unit").select_option("days")
    page.get_by_role("button", name="Save scenario").click()

    expect(page.get_by_role("status")).to_contain_text("Scenario cart saved.")
    flow = page.get_by_role("figure", name="Flow of Cart reminder")
    expect(flow).to_contain_text("Abandoned a cart")
    expect(flow).to_contain_text("Wait 15 min")
    expect(flow).to_contain_text("Up to 1 day for “Ordered”")
    yes = flow.locator(".flow-way-yes")
    no = flow.locator(".flow-way-no")
    expect(yes).to_contain_text("Yes: Ordered")
    expect(yes).to_contain_text("End of journey")
    expect(no).to_contain_text("No: not within 1 day")
    expect(no).to_contain_text("App push with template cart")
    screenshot(page, "scenario-flow")

    # Pause (it asks first), then on again.
    page.get_by_role("button", name="Pause cart").click()
    page.get_by_role("button", name="Pause cart: end its running journeys").click()
    expect(page.get_by_role("status")).to_contain_text("Scenario cart paused")
    expect(page.locator(".scenario-meta")).to_contain_text("paused")
    page.get_by_role("button", name="Activate cart").click()
    expect(page.get_by_role("status")).to_contain_text("Scenario cart is active again.")
    expect(page.locator(".scenario-meta")).to_contain_text("active")
    # What was saved comes back into the form and saves again.
    page.get_by_role("button", name="Edit").click()
    step(page, 1).get_by_label("Wait for", exact=True).fill("20")
    page.get_by_role("button", name="Save scenario").click()
    expect(page.get_by_role("status")).to_contain_text("Scenario cart saved (version 4).")
    expect(flow).to_contain_text("Wait 20 min")
    expect(flow.locator(".flow-way-no")).to_contain_text("App push with template cart")
    page.get_by_role("link", name="← All scenarios").click()
    expect(page.get_by_role("row").filter(has_text="Cart reminder")).to_contain_text("active")


def test_a_spend_condition_names_the_currency_it_counts(page: Page, console: Console) -> None:
    sign_in(page, console, "marketer")
    page.goto(console.page_url("scenarios"))
    page.get_by_role("link", name="New scenario").click()
    page.get_by_label("Key", exact=True).fill("big-spenders")
    page.get_by_label("Name", exact=True).fill("Big spenders")
    page.get_by_label("Starts when the customer").select_option("app.opened")
    page.get_by_label("Only customers who meet a condition").check()
    page.get_by_label("Condition", exact=True).select_option("spend")
    page.get_by_label("Amount", exact=True).fill("500")
    page.get_by_label("Currency", exact=True).fill("EUR")
    add_step(page, "Tag the customer")
    step(page, 1).get_by_label("Add tags").fill("big-spender")
    page.get_by_role("button", name="Save scenario").click()
    expect(page.get_by_role("status")).to_contain_text("Scenario big-spenders saved.")
    with session_scope(console.engine) as session:
        saved = get_scenario(session, tenant=console.tenant, key="big-spenders")
    assert saved is not None
    assert saved.spec["conditions"] == {"spend": {"op": "gte", "value": "500",
                                                  "currency": "EUR"}}


def test_the_report_shows_holdout_variants_and_the_funnel(page: Page, console: Console) -> None:
    seed_template(console)
    customers = run_journeys(console)
    with session_scope(console.engine) as session:
        messages = session.exec(select(Message)).all()
    sign_in(page, console, "marketer")
    page.goto(console.page_url("scenarios") + "?key=cart")
    report = page.get_by_role("region", name="Report")
    side_by_side = report.get_by_role("table", name="Journeys by group, side by side")
    expect(side_by_side.get_by_role("columnheader")).to_have_text(
        ["Measure", "Holdout (nothing sent)", "Variant a", "Variant b"])
    held_out = customers - len(messages)
    expect(report).to_contain_text(
        f"{held_out} journey{'' if held_out == 1 else 's'} held out in this period")
    if held_out < 100:  # too few to trust the uplift: the page says so
        expect(report).to_contain_text(
            f"Only {held_out} journey{'' if held_out == 1 else 's'} held out so far")
    funnel = report.get_by_role("table", name="Messages per step and variant")
    for variant in ("a", "b"):
        mine = [message for message in messages if message.variant == variant]
        stages = [len(mine), 0, sum(m.sent_at is not None for m in mine), 0,
                  sum(m.opened_at is not None for m in mine), 0,
                  sum(m.converted_at is not None for m in mine), 0, 0, 0,
                  sum(m.sent_at is None for m in mine)]
        expect(funnel.get_by_role("row").filter(has_text=f"remind{variant}").get_by_role("cell")
               ).to_have_text(["remind", variant, *map(str, stages)])
    expect(report.get_by_role("img", name="Messages by stage").locator("canvas")).to_be_visible()
    expect(report.get_by_role("img", name="Conversion by group")).to_be_visible()
    screenshot(page, "scenario-report")


def test_an_analyst_sees_scenarios_but_changes_nothing(page: Page, console: Console) -> None:
    seed_template(console)
    with session_scope(console.engine) as session:
        save_scenario(session, tenant=console.tenant, now=datetime.now(UTC),
                      spec=ScenarioSpec.model_validate(reported_scenario()))
        session.commit()
    sign_in(page, console, "analyst")
    page.goto(console.page_url("scenarios"))
    expect(page.get_by_text("Your role (analyst) can look but not change this")).to_be_visible()
    expect(page.get_by_role("link", name="New scenario")).to_have_count(0)
    page.get_by_role("link", name="Open cart").click()
    expect(page.get_by_role("figure", name="Flow of Cart reminder")).to_contain_text("App push")
    expect(page.get_by_role("button", name="Edit")).to_have_count(0)
    expect(page.get_by_role("button", name="Pause cart")).to_have_count(0)
    refused = page.evaluate("""async () => {
        const context = JSON.parse(document.getElementById("console-context").textContent);
        const answer = await fetch(`/tenants/${context.tenant}/scenarios/cart`, {
            method: "DELETE", headers: {"X-CSRF-Token": context.csrf_token}});
        return [answer.status, (await answer.json()).detail];
    }""")
    assert refused == [403, "an analyst may not do this (it needs scenarios.write)"]
