"""Gateways from the console: a store operator adds one and reads its code once, the
device enrols with it (`vitrina-edge enrol`, against this server and a real broker) and
its login connects; a config change arrives retained on the broker; a revocation ends
the gateway's session; a marketer sees no such buttons and the API refuses them. Each of
the dialogs (the code shown once, the config form with an error, the revocation asked
for once more) is checked by axe-core. A gateway that reports but was enrolled offline is
shown as such, without actions, with its health over the last day (figures, alerts and
charts); a store whose gateways are not revoked is not deleted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.auth.permissions import MemberRole
from cloud.db import session_scope
from cloud.places.crud import put_store
from cloud.places.models import StoreCreate
from provisioning.broker_security import BrokerFiles
from provisioning.local_broker import free_port
from shared.status import decode_gateway_config
from tests.cloud.console.accessibility import violations
from tests.cloud.console.conftest import Clock, Console, screenshot, sign_in
from tests.cloud.console.test_live import report_status
from tests.cloud.factories import add_member
from tests.cloud.gateway_support import gateway_cloud_settings, gateway_login
from tests.cloud.running import running_api, wait_for
from tests.edge.cli import run_cli

CODE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$")
#: What must not stop a member in a dialog (the pages' own checks look at every impact).
BLOCKING = frozenset({"serious", "critical"})


@pytest.fixture
def console(engine: Engine, migrated_url: str, tenant: str, secure_broker: BrokerFiles
            ) -> Iterator[Console]:
    """The console of `tests/cloud/console/conftest.py`, wired to a broker with dynamic
    security (the orchestrator's login and the broker's admin login)."""
    clock = Clock()
    settings = gateway_cloud_settings(tenant=tenant, database_url=migrated_url,
                                      files=secure_broker, scenarios={"quiet_hours": None})
    app = create_app(settings, engine=engine, now=clock)
    emails = {}
    for role in MemberRole:
        emails[role.value] = f"{role.value.replace('_', '-')}@shop.example"
        add_member(engine, email=emails[role.value], tenant=tenant, role=role)
    with session_scope(engine) as session:
        put_store(session, tenant=tenant, key="centro", now=clock(),
                  data=StoreCreate(name="Madrid Centro", time_zone="Europe/Madrid"))
        session.commit()
    with running_api(app, free_port()) as url:
        yield Console(url=url, tenant=tenant, engine=engine, clock=clock, emails=emails, app=app)


def test_a_store_operator_enrols_configures_and_revokes_a_gateway(
    page: Page, console: Console, tmp_path: Path
) -> None:
    sign_in(page, console, "store_operator")
    page.goto(console.page_url("stores"))
    page.get_by_role("button", name="Add gateway to Madrid Centro").click()
    dialog = page.get_by_role("dialog", name="Add a gateway to Madrid Centro")
    dialog.get_by_label("Gateway id").fill("door-1")
    dialog.get_by_role("button", name="Add and show its code").click()
    shown = page.get_by_role("dialog", name="Enrol gateway door-1")
    code = shown.locator(".enrolment-code").inner_text().strip()
    assert CODE.fullmatch(code), code
    command = shown.locator("pre code").inner_text()
    assert command.endswith(f"vitrina-edge enrol --code {code} --cloud {console.url}")
    assert violations(page, impacts=BLOCKING) == []
    shown.get_by_role("button", name="Done").click()
    table = page.get_by_role("table", name="Enrolment of Madrid Centro")
    expect(table.get_by_role("row").filter(has_text="door-1")).to_contain_text(
        "waiting for enrolment")
    expect(page.get_by_text(code)).to_have_count(0)  # shown once

    bundle = tmp_path / "etc-vitrina"
    enrolled = run_cli("enrol", "--code", code, "--cloud", console.url, "--dir", bundle)
    assert enrolled.returncode == 0, enrolled.stderr
    assert f"enrolled as {console.tenant}/centro/door-1" in enrolled.stdout
    with gateway_login(bundle / "edge.toml") as login:
        assert login.accepted, login.reason
        page.reload()
        row = table.get_by_role("row").filter(has_text="door-1")
        expect(row).to_contain_text("enrolled")

        row.get_by_role("button", name="Configure gateway door-1").click()
        form = page.get_by_role("dialog", name="Configuration of gateway door-1")
        floor = form.get_by_label("RSSI floor (dBm)")
        floor.fill("-300")
        form.get_by_role("button", name="Add zone").click()
        form.get_by_label("Zone 1 name").fill("door")
        form.get_by_label("Zone 1 minimum RSSI (dBm)").fill("-60")
        form.get_by_role("button", name="Save and send to the gateway").click()
        expect(floor).to_have_accessible_description(re.compile("greater than or equal to -127"))
        assert violations(page, impacts=BLOCKING) == []
        floor.fill("-80")
        form.get_by_role("button", name="Save and send to the gateway").click()
        expect(page.get_by_role("status").filter(
            has_text="Configuration version 1 of door-1 saved and sent.")).to_be_visible()
        expect(row).to_contain_text("v1 saved, not yet in force")
        wait_for(lambda: login.configs, what="the retained config on the broker")
        config = decode_gateway_config(login.configs[-1])
        assert config.version == 1
        assert config.rssi_floor == -80
        assert [(zone.zone, zone.min_rssi) for zone in config.zones or []] == [("door", -60)]
        screenshot(page, "gateways")

        row.get_by_role("button", name="Revoke door-1").click()
        confirm = row.get_by_role("button", name="Really revoke gateway door-1")
        expect(confirm).to_be_visible()
        assert violations(page, impacts=BLOCKING) == []
        confirm.click()
        expect(page.get_by_role("status").filter(
            has_text="Gateway door-1 revoked: its broker login is gone.")).to_be_visible()
        assert login.disconnected.wait(10), "the revoked gateway kept its session"
    expect(row).to_contain_text("revoked")
    with gateway_login(bundle / "edge.toml") as again:
        assert not again.accepted


def test_a_marketer_sees_the_gateways_but_may_not_add_or_revoke(
    page: Page, console: Console
) -> None:
    sign_in(page, console, "marketer")
    page.goto(console.page_url("stores"))
    expect(page.get_by_role("heading", name="Madrid Centro")).to_be_visible()
    expect(page.get_by_text("No gateway added from the console for this store yet.")
           ).to_be_visible()
    expect(page.get_by_role("button", name="Add gateway to Madrid Centro")).to_have_count(0)
    csrf = page.request.get(f"{console.url}/auth/me").json()["csrf_token"]
    refused = page.request.post(
        f"{console.url}/tenants/{console.tenant}/stores/centro/gateways",
        data={"gateway": "door-2"},
        headers={"X-CSRF-Token": csrf, "X-Requested-With": "vitrina-console"})
    assert refused.status == 403
    assert refused.json()["detail"] == "a marketer may not do this (it needs stores.write)"


def test_a_gateway_enrolled_offline_is_shown_as_such_and_its_store_is_kept(
    page: Page, console: Console
) -> None:
    now = console.clock()
    for minutes_ago, frames, reported in ((10, 600, {"cpu_percent": 3.0, "temperature_c": 47.5}),
                                         (0, 1800, {"cpu_percent": 5.0, "temperature_c": 82.0,
                                                    "memory_bytes": 60 * 2**20})):
        report_status(console, online=True, sent_at=now - timedelta(minutes=minutes_ago),
                      store="centro", gateway="side-1", software_version="1.4.2",
                      uptime_s=4200 - minutes_ago * 60, config_version=3, **reported,
                      sources={"ble": {"alive": True, "frames": frames, "errors": 0}})
    sign_in(page, console, "store_operator")
    page.goto(console.page_url("stores"))
    health = page.get_by_role("table", name="Gateways of Madrid Centro")
    row = health.get_by_role("row").filter(has_text="side-1")
    expect(row).to_contain_text("online")
    expect(row).to_contain_text("not registered (enrolled offline)")
    expect(page.get_by_role("button", name="Configure gateway side-1")).to_have_count(0)
    expect(page.get_by_role("button", name="Revoke side-1")).to_have_count(0)
    row.get_by_role("button", name="Details of gateway side-1").click()
    dialog = page.get_by_role("dialog", name="Gateway side-1 of centro")
    expect(dialog).to_contain_text("not registered (enrolled offline)")
    expect(dialog).to_contain_text("vitrina-provision revoke-gateway")
    # its health: the newest heartbeat's figures, its alerts and its last day in charts
    expect(dialog.locator("dd").filter(has_text="version 3")).to_have_count(1)
    expect(dialog.locator("dd").filter(has_text="82.0 °C")).to_have_count(1)
    expect(dialog.locator("dd").filter(has_text="60 MiB")).to_have_count(1)
    history = dialog.get_by_role("region", name="Health of gateway side-1")
    expect(history.get_by_role("list", name="Alerts")).to_contain_text(
        "Warning: the board is at 82 °C")
    expect(history.get_by_role("img", name=re.compile(
        r"^Frames per minute, by source\. ble: — .*, 120 "))).to_be_visible()
    history.get_by_text("Show the figures of Agent CPU and board temperature").click()
    table = history.get_by_role("table", name="Agent CPU and board temperature")
    expect(table.get_by_role("row")).to_have_count(3)
    expect(table.get_by_role("row").last).to_contain_text("82.0 °C")
    assert violations(page, impacts=BLOCKING) == []
    dialog.get_by_role("button", name="Close").click()

    page.get_by_role("button", name="Add gateway to Madrid Centro").click()
    adding = page.get_by_role("dialog", name="Add a gateway to Madrid Centro")
    adding.get_by_label("Gateway id").fill("door-1")
    adding.get_by_role("button", name="Add and show its code").click()
    page.get_by_role("dialog", name="Enrol gateway door-1").get_by_role(
        "button", name="Done").click()
    stores = page.get_by_role("table", name="The tenant's stores")
    stores.get_by_role("button", name="Delete").click()
    stores.get_by_role("button", name="Delete store centro").click()
    refusal = page.get_by_role("alert").filter(has_text="Store not deleted")
    expect(refusal).to_contain_text("still has registered gateways (door-1): revoke them first")
    expect(stores.get_by_role("row").filter(has_text="Madrid Centro")).to_be_visible()
