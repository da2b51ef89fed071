"""The scenarios page as a marketer uses it: a scenario built through the form, refused
with the problem shown at its step, fixed, saved and seen as a flow; paused and active
again; its report with real journeys and messages; and read-only for an analyst."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import Locator, Page, expect
from sqlmodel import col, select

from cloud.customers.crud import create_customer, record_consent, register_device
from cloud.customers.models import ConsentCreate, CustomerCreate, DeviceKind, FcmRegistration
from cloud.db import session_scope
from cloud.messages.models import Message, MessageStatus
from cloud.scenarios.assignment import assign_variant, in_holdout
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.settings import ScenarioSettings
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec
from cloud.triggers import TriggerKind, record_trigger
from tests.cloud.console.accessibility import violations
from tests.cloud.console.conftest import Console, screenshot, sign_in

PUSH = {"title": "Hola {{ customer.first_name }}", "body": "Tu carrito te espera"}
#: Customers entering the reported scenario at least; more join until the holdout has one
#: and each variant has five (assignment hashes the tenant, which each test makes anew).
CUSTOMERS = 24


def seed_template(console: Console, key: str = "cart") -> None:
    with session_scope(console.engine) as session:
        save_template(session, tenant=console.tenant, key=key, now=datetime.now(UTC),
                      spec=TemplateSpec.model_validate(
                          {"channel": "push", "locale": "es-ES", "parts": PUSH}))
        session.commit()


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


def reported_scenario() -> dict[str, Any]:
    return {
        "key": "cart", "name": "Cart reminder", "entry": {"event": "cart.abandoned"},
        "holdout_percent": 20, "variants": [{"key": "a"}, {"key": "b"}],
        "steps": [{"id": "remind", "type": "send", "channels": ["push"], "template": "cart"}],
    }


def run_journeys(console: Console) -> int:
    """Customers with the app abandon carts and the engine runs: journeys in the holdout
    and in each variant, a push queued for each treated one; some are then sent and
    opened, and some customers order. Returns how many customers entered."""
    now = datetime.now(UTC)
    with session_scope(console.engine) as session:
        spec = ScenarioSpec.model_validate(reported_scenario())
        save_scenario(session, tenant=console.tenant, now=now, spec=spec)
        groups: Counter[str | None] = Counter()
        number = 0
        while number < CUSTOMERS or groups["holdout"] < 1 or min(groups["a"], groups["b"]) < 5:
            number += 1
            customer = create_customer(session, tenant=console.tenant, now=now,
                                       data=CustomerCreate(first_name=f"C{number}"))
            record_consent(session, customer=customer, now=now, data=ConsentCreate(
                channel="push", granted=True, source="app", given_at=now))
            register_device(session, customer=customer, pseudonymizers=[], now=now,
                            registration=FcmRegistration(kind=DeviceKind.FCM,
                                                         token=f"fcm-token-{number:016d}"))
            assert customer.id is not None
            record_trigger(session, tenant=console.tenant, customer_id=customer.id,
                           kind=TriggerKind.CART_ABANDONED, occurred_at=now,
                           source_key=f"cart:{number}", now=now, attributes={})
            group = (None if in_holdout(spec, console.tenant, customer.id)
                     else assign_variant(spec, console.tenant, customer.id))
            groups[group or "holdout"] += 1
        session.commit()
        config = EngineConfig(settings=ScenarioSettings(quiet_hours=None),
                              links=Links(base_url=console.url, secret="s" * 32))
        process_triggers(session, catalog=Catalog(), config=config, now=now, limit=100)
        session.commit()
        queued = session.exec(select(Message).order_by(col(Message.id))).all()
        later = now + timedelta(minutes=5)
        for index, message in enumerate(queued[:10]):
            message.status, message.sent_at = MessageStatus.SENT, now
            message.opened_at = later if index < 5 else None
            message.converted_at = later if index < 2 else None
            session.add(message)
        session.commit()
        for order, customer_id in enumerate(sorted({m.customer_id for m in queued})[:4]):
            record_trigger(session, tenant=console.tenant, customer_id=customer_id,
                           kind=TriggerKind.ORDER_CREATED, occurred_at=later,
                           source_key=f"order:{order}", now=later, attributes={})
        session.commit()
    return number


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
    expect(report).to_contain_text(f"{customers - len(messages)} journeys held out")
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
