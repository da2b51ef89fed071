"""The Shop settings page as a marketer uses it: the shop's own quiet hours and time zone
set, refused at the field the API names, switched off and back to the deployment's, each
store's own shown beside them; read-only for a store operator; and no accessibility
problem of any impact, the form's included."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from cloud.db import session_scope
from cloud.places.crud import put_store
from cloud.places.models import StoreCreate
from cloud.preferences.models import QuietWindow
from tests.cloud.console.accessibility import violations
from tests.cloud.console.conftest import Console, screenshot, sign_in


def _stores(console: Console) -> None:
    with session_scope(console.engine) as session:
        put_store(session, tenant=console.tenant, key="centro", now=console.clock(),
                  data=StoreCreate(name="Madrid Centro", time_zone="Europe/Madrid",
                                   quiet_hours=QuietWindow.model_validate(
                                       {"start": "22:00", "end": "10:00"})))
        put_store(session, tenant=console.tenant, key="norte", now=console.clock(),
                  data=StoreCreate(name="Norte", time_zone="Atlantic/Canary"))
        session.commit()


def test_a_marketer_sets_the_shop_s_quiet_hours_and_time_zone(
    page: Page, console: Console,
) -> None:
    _stores(console)
    sign_in(page, console, "marketer")
    page.goto(console.page_url("settings"))
    in_force = page.get_by_label("In force")
    # The console's deployment has no quiet hours (conftest): that is what applies now.
    expect(in_force).to_contain_text("none (messages at any hour), the deployment's")
    expect(in_force).to_contain_text("never: the deployment's settings apply")
    form = page.get_by_role("form", name="Quiet hours and time zone")
    quiet = form.get_by_role("group", name="Quiet hours")
    expect(quiet.get_by_label("The deployment's: none (messages at any hour)")).to_be_checked()
    expect(quiet.get_by_label("Quiet hours start")).to_be_disabled()
    stores = page.get_by_role("table", name="Quiet hours of each store")
    expect(stores.get_by_role("row").filter(has_text="Madrid Centro")).to_contain_text(
        "22:00\N{EN DASH}10:00")
    expect(stores.get_by_role("row").filter(has_text="Norte")).to_contain_text("the shop's")
    assert violations(page) == []

    quiet.get_by_label("Own hours").check()
    quiet.get_by_label("Quiet hours start").fill("21:30")
    quiet.get_by_label("Quiet hours end").fill("21:30")
    # Equal times are no window: said at once, and not sent.
    save = form.get_by_role("button", name="Save shop settings")
    expect(quiet).to_have_accessible_description(re.compile("Start and end are the same"))
    expect(save).to_be_disabled()
    quiet.get_by_label("Quiet hours end").fill("09:00")
    expect(save).to_be_enabled()
    zone = form.get_by_label("Time zone")
    # A zone the browser offers but the server does not know (their tz databases differ).
    zone.evaluate("select => select.add(new Option('Atlantis/Poseidonia', 'Atlantis/Poseidonia'))")
    zone.select_option("Atlantis/Poseidonia")
    save.click()
    # The API's refusal, at the field it names.
    expect(zone).to_have_accessible_description(
        re.compile("'Atlantis/Poseidonia' is not a known IANA time zone"))
    expect(page.get_by_role("alert")).to_contain_text("Settings not saved: see the fields")
    assert violations(page) == []
    screenshot(page, "settings-refused")

    zone.select_option("Europe/Madrid")
    form.get_by_role("button", name="Save shop settings").click()
    expect(page.get_by_role("status").filter(has_text="Shop settings saved (version 1).")
           ).to_be_visible()
    expect(in_force).to_contain_text("21:30\N{EN DASH}09:00, this shop's own")
    expect(in_force).to_contain_text("Europe/Madrid, this shop's own")
    expect(in_force).to_contain_text("version 1")
    screenshot(page, "settings")

    page.reload()  # what was saved, not what the form still held
    expect(quiet.get_by_label("Own hours")).to_be_checked()
    expect(quiet.get_by_label("Quiet hours start")).to_have_value("21:30")
    expect(form.get_by_label("Time zone")).to_have_value("Europe/Madrid")
    quiet.get_by_label("None: messages go out at any hour").check()
    form.get_by_role("button", name="Save shop settings").click()
    expect(in_force).to_contain_text("none (messages at any hour), this shop's own")
    quiet.get_by_label("The deployment's: none (messages at any hour)").check()
    form.get_by_label("Time zone").select_option("")
    form.get_by_role("button", name="Save shop settings").click()
    expect(in_force).to_contain_text("version 3")
    expect(in_force).to_contain_text("none (messages at any hour), the deployment's")
    expect(in_force).to_contain_text("UTC, the deployment's")


def test_a_store_operator_reads_the_shop_settings_but_changes_nothing(
    page: Page, console: Console,
) -> None:
    sign_in(page, console, "store_operator")
    page.goto(console.page_url("settings"))
    expect(page.get_by_text("Your role (store operator) can look but not change this")
           ).to_be_visible()
    form = page.get_by_role("form", name="Quiet hours and time zone")
    expect(form.get_by_role("radio", name="Own hours")).to_be_disabled()
    expect(form.get_by_label("Time zone")).to_be_disabled()
    expect(form.get_by_role("button", name="Save shop settings")).to_have_count(0)
