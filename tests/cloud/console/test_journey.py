"""A shop sets itself up in the console and watches its first shopper: the whole product
running as its own processes (`vitrina-cloud serve` on PostgreSQL, a broker, a local FCM
server, `vitrina-edge replay` as the store's gateway), driven in a real browser.

The owner signs in, adds the store, draws its geofence, creates an offer, a push template
and a greeting scenario; a recorded morning is replayed as if it were happening now; the
live page's count of devices present moves while it plays, the shopper who consented gets
one push, and the scenario's report shows it in the funnel.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from edge.captures import DEMO_ANA_INSTALL_ID, JUAN_INSTALL_ID
from provisioning.local_broker import LocalBroker
from tests.cloud.console.accessibility import violations
from tests.cloud.console.conftest import screenshot
from tests.cloud.factories import CONSOLE_PASSWORD
from tests.support.postgres import fresh_database
from tests.support.stack import STORE, Stack, register, replay_capture, running_stack

OWNER = "owner@shop.example"
#: The five recorded minutes play in about ten seconds: long enough to watch.
REPLAY_SPEED = "30"
#: A replay, then the scenario and delivery workers: generous for a loaded machine.
JOURNEY_TIMEOUT_MS = 60_000


@pytest.fixture
def stack(broker: LocalBroker, mqtt_namespace: str, tmp_path: Path) -> Iterator[Stack]:
    with fresh_database() as database_url, running_stack(
        broker=broker, tenant=mqtt_namespace, database_url=database_url, workdir=tmp_path
    ) as running:
        running.command("members", "add", "--email", OWNER, "--tenant", running.tenant,
                        "--role", "owner", "--password-stdin", stdin=f"{CONSOLE_PASSWORD}\n")
        yield running


def page_url(stack: Stack, slug: str) -> str:
    return f"{stack.api}/console/t/{stack.tenant}/{slug}"


def add_store(page: Page, stack: Stack) -> None:
    page.goto(page_url(stack, "stores"))
    page.get_by_role("button", name="New store").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Key").fill(STORE)
    dialog.get_by_label("Name").fill("Madrid Centro")
    dialog.get_by_label("Time zone").select_option("Europe/Madrid")
    dialog.get_by_role("button", name="Save store").click()
    expect(page.get_by_role("row").filter(has_text="Madrid Centro")).to_be_visible()


def draw_geofence(page: Page, stack: Stack) -> None:
    page.goto(page_url(stack, "geofences"))
    box = page.get_by_role("region", name="Map of the geofences").bounding_box()
    assert box is not None
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.get_by_role("button", name="Draw a circle").click()
    page.mouse.click(centre_x, centre_y)
    page.mouse.click(centre_x + 60, centre_y)
    form = page.get_by_role("form", name="New geofence")
    form.get_by_label("Geofence id").fill("centro-door")
    form.get_by_role("button", name="Save geofence").click()
    expect(page.get_by_role("status")).to_contain_text("Geofence centro-door saved.")


def create_offer(page: Page, stack: Stack) -> None:
    page.goto(page_url(stack, "offers"))
    page.get_by_role("button", name="New offer").click()
    dialog = page.get_by_role("dialog")
    for label, value in {"Key": "dryers-20", "Name": "Dryers 20%", "Discount (%)": "20",
                         "Category": "dryers", "Product name": "Heat-pump dryer 9 kg",
                         "Product page": "https://shop.example/dryers",
                         "Image": "https://cdn.shop.example/dryer.jpg", "Price": "699.00"}.items():
        dialog.get_by_label(label, exact=True).fill(value)
    dialog.get_by_role("button", name="Save offer").click()
    expect(page.get_by_role("row").filter(has_text="dryers-20")).to_contain_text("Dryers 20%")


def create_greeting(page: Page, stack: Stack) -> None:
    """A push template, then the scenario that sends it when an app user walks in."""
    page.goto(page_url(stack, "templates"))
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Key", exact=True).fill("welcome")
    page.get_by_label("Channel").select_option("push")
    page.get_by_label("Locale").select_option("en-GB")
    page.get_by_label("Title", exact=True).fill("{{ store.name }}")
    page.get_by_label("Body", exact=True).fill("Welcome, {{ customer.first_name }}!")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Template welcome (push, en-GB) saved: version 1.")

    page.goto(page_url(stack, "scenarios"))
    page.get_by_role("link", name="New scenario").click()
    page.get_by_label("Key", exact=True).fill("store-welcome")
    page.get_by_label("Name", exact=True).fill("Greet app users who walk in")
    page.get_by_label("Starts when the customer").select_option("presence.enter")
    page.get_by_label("New step").select_option(label="Send a message")
    page.get_by_role("button", name="Add step").click()
    page.get_by_role("group", name="Step 1:").get_by_label("Template", exact=True).fill("welcome")
    page.get_by_role("button", name="Save scenario").click()
    expect(page.get_by_role("status")).to_contain_text("Scenario store-welcome saved.")


def test_a_shop_sets_up_in_the_console_and_watches_its_first_shopper(
    page: Page, stack: Stack, broker: LocalBroker, tmp_path: Path
) -> None:
    juan = register(stack, name="juan", install_id=JUAN_INSTALL_ID, location_consent=True)
    register(stack, name="ana", install_id=DEMO_ANA_INSTALL_ID, location_consent=False)
    page.goto(f"{stack.api}/console")
    page.get_by_label("Email address").fill(OWNER)
    page.get_by_label("Password").fill(CONSOLE_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{stack.api}/console/t/**")
    add_store(page, stack)
    draw_geofence(page, stack)
    create_offer(page, stack)
    create_greeting(page, stack)

    page.goto(page_url(stack, "live"))
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    present = page.get_by_role("region", name=STORE).get_by_role(
        "group", name="Devices present")
    expect(present).to_have_text(re.compile(r"^0\s*Devices present"))
    replayed: list[str] = []
    gateway = threading.Thread(target=lambda: replayed.append(replay_capture(
        stack, broker, tmp_path, "--speed", REPLAY_SPEED, "--now", "--quiet")))
    gateway.start()
    try:
        expect(present).to_have_text(re.compile(r"^[1-9]\d*\s*Devices present"),
                                     timeout=JOURNEY_TIMEOUT_MS)
        expect(page.get_by_role("region", name=STORE).get_by_role(
            "group", name="Gateways online")).to_have_text("1 of 1Gateways online")
        screenshot(page, "journey-live")
        assert violations(page) == []
    finally:
        gateway.join()
    assert replayed, "the replay did not finish"
    # The recording ends with every device leaving: the count comes back down.
    expect(present).to_have_text(re.compile(r"^0\s*Devices present"),
                                 timeout=JOURNEY_TIMEOUT_MS)

    pushed = stack.fcm.wait_for(1, timeout_s=JOURNEY_TIMEOUT_MS / 1000)
    assert [message.token for message in pushed] == [juan]
    assert pushed[0].message["notification"] == {
        "title": "Madrid Centro", "body": "Welcome, juan!"}

    page.goto(page_url(stack, "scenarios") + "?key=store-welcome")
    funnel = page.get_by_role("region", name="Report").get_by_role(
        "table", name="Messages per step and variant")
    header = funnel.get_by_role("columnheader")
    expect(header.first).to_be_visible()
    columns = header.all_text_contents()
    sent = columns.index(next(name for name in columns if name.startswith("Sent")))
    row = funnel.get_by_role("row").filter(has_text="send-1")
    expect(row.get_by_role("cell").nth(sent)).to_have_text("1", timeout=JOURNEY_TIMEOUT_MS)
    screenshot(page, "journey-funnel")
