"""The geofences page with no map tiles configured (as every test runs): a store operator
draws a circle and a polygon with the mouse and saves them, changes one by its
coordinates from the keyboard, sees a refused definition at its field and consenting app
users' recent fixes; a role that may not write sees the map read-only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine

from cloud.customers.crud import create_customer, record_consent
from cloud.customers.models import ConsentCreate, CustomerCreate
from cloud.db import session_scope
from cloud.places.crud import get_geofence, put_geofence, put_store
from cloud.places.models import StoreCreate
from cloud.places.recent import keep_recent_fixes
from cloud.places.tracker import LocationReport
from tests.cloud.console.conftest import Console, screenshot, sign_in

MADRID = (40.4168, -3.7038)
#: Four "latitude, longitude" lines: the corners of a polygon drawn on the map.
CORNER_LINES = re.compile(r"^(-?\d+\.\d+, -?\d+\.\d+\n){3}-?\d+\.\d+, -?\d+\.\d+$")
CIRCLE = {"store": "centro", "dwell_after_s": 300,
          "shape": {"circle": {"lat": MADRID[0], "lon": MADRID[1], "radius_m": 60}}}


def add_store(engine: Engine, tenant: str, **geofences: dict[str, object]) -> None:
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        put_store(session, tenant=tenant, key="centro", now=now,
                  data=StoreCreate(name="Madrid Centro", time_zone="Europe/Madrid"))
        for geofence_id, definition in geofences.items():
            put_geofence(session, tenant=tenant, geofence_id=geofence_id,
                         definition=definition, now=now)
        session.commit()


def add_fix(engine: Engine, tenant: str, *, location_consent: bool | None, east: float) -> str:
    """A customer whose phone reported a fix a minute ago; their public id (what the
    console shows: never the database's number)."""
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        customer = create_customer(session, tenant=tenant, now=now, data=CustomerCreate())
        assert customer.id is not None
        if location_consent is not None:
            record_consent(session, customer=customer, now=now, data=ConsentCreate(
                channel="location_marketing", granted=location_consent, source="app"))
        keep_recent_fixes(session, tenant=tenant, customer_id=customer.id, now=now, reports=[
            LocationReport(tenant, str(customer.id), MADRID[0], MADRID[1] + east, 12.0,
                           now - timedelta(minutes=1))])
        session.commit()
        return customer.public_id


def map_box(page: Page) -> tuple[float, float, float, float]:
    box = page.get_by_role("region", name="Map of the geofences").bounding_box()
    assert box is not None
    return box["x"], box["y"], box["width"], box["height"]


def shapes_drawn(page: Page) -> int:
    return page.locator(".geofence-map .leaflet-overlay-pane path").count()


def test_a_store_operator_draws_a_circle_and_a_polygon_and_saves_them(
    page: Page, console: Console
) -> None:
    add_store(console.engine, console.tenant)
    sign_in(page, console, "store_operator")
    page.goto(console.page_url("geofences"))
    expect(page.get_by_text("Map tiles are not configured")).to_be_visible()
    x, y, width, height = map_box(page)
    centre_x, centre_y = x + width / 2, y + height / 2
    page.get_by_role("button", name="Draw a circle").click()
    page.mouse.click(centre_x - 150, centre_y)
    page.mouse.click(centre_x - 90, centre_y)
    form = page.get_by_role("form", name="New geofence")
    expect(form.get_by_label("Radius (m)")).not_to_have_value("")
    form.get_by_label("Geofence id").fill("centro-door")
    form.get_by_label("Dwell threshold (s)").fill("120")
    form.get_by_label("Always active").uncheck()
    form.get_by_label("Monday").fill("9:30-21:00")
    form.get_by_label("Friday").fill("09:30-21:00, 22:00-02:00")
    form.get_by_role("button", name="Save geofence").click()
    expect(page.get_by_role("status")).to_contain_text("Geofence centro-door saved.")
    row = page.get_by_role("row").filter(has_text="centro-door")
    expect(row).to_contain_text("circle")
    dash = "\N{EN DASH}"
    expect(row).to_contain_text(
        f"Mon 09:30{dash}21:00; Fri 09:30{dash}21:00, 22:00{dash}02:00")
    expect(page.locator(".geofence-label", has_text="centro-door")).to_be_visible()

    page.get_by_role("button", name="Draw a polygon").click()
    corners = [(60, -60), (180, -60), (180, 60), (60, 60)]
    for dx, dy in corners:
        page.mouse.click(centre_x + dx, centre_y + dy)
    page.mouse.click(centre_x + corners[0][0], centre_y + corners[0][1])
    form = page.get_by_role("form", name="New geofence")
    expect(form.get_by_label("Corners")).to_have_value(CORNER_LINES)
    form.get_by_label("Geofence id").fill("centro-aisle")
    form.get_by_role("button", name="Save geofence").click()
    expect(page.get_by_role("status")).to_contain_text("Geofence centro-aisle saved.")
    expect(page.get_by_role("row").filter(has_text="centro-aisle")).to_contain_text(
        "polygon, 4 corners")
    expect(page.locator(".geofence-label")).to_have_count(2)
    assert shapes_drawn(page) == 2



def test_a_store_operator_works_by_keyboard_and_sees_consenting_users_fixes(
    page: Page, console: Console
) -> None:
    add_store(console.engine, console.tenant, centro=CIRCLE)
    shown = add_fix(console.engine, console.tenant, location_consent=True, east=0.0004)
    add_fix(console.engine, console.tenant, location_consent=None, east=0.0005)
    add_fix(console.engine, console.tenant, location_consent=False, east=0.0006)
    sign_in(page, console, "store_operator")
    page.goto(console.page_url("geofences"))
    expect(page.get_by_text("1 location report from app users")).to_be_visible()
    expect(page.locator(".fix-marker")).to_have_count(1)
    page.get_by_text("List the location reports").click()
    reports = page.get_by_role("table", name="Recent location reports, newest first")
    expect(reports.get_by_role("row")).to_have_count(2)  # the header and one fix
    expect(reports.get_by_role("row").nth(1).get_by_role("cell").first).to_have_text(str(shown))

    # a new geofence by keyboard alone: refused at its field first, then saved
    page.get_by_role("button", name="New geofence").focus()
    page.keyboard.press("Enter")
    form = page.get_by_role("form", name="New geofence")
    form.get_by_label("Geofence id").focus()
    page.keyboard.type("kiosk")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # the tenant's one store
    for label, value in (("Latitude", "40.4171"), ("Longitude", "-3.7031"),
                         ("Radius (m)", "30000")):
        form.get_by_label(label).focus()
        page.keyboard.type(value)
    page.keyboard.press("Enter")
    radius = form.get_by_label("Radius (m)")
    expect(radius).to_have_attribute("aria-invalid", "true")
    expect(form.locator(".field.invalid")).to_contain_text("must be > 0 and <= 20000 m")
    expect(form.get_by_role("alert")).to_contain_text("radius_m: must be > 0")
    radius.fill("")
    page.keyboard.type("25")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status").filter(has_text="saved")).to_have_text(
        "Geofence kiosk saved.")

    # the existing one moved and resized by its coordinates
    page.get_by_role("button", name="Edit centro").focus()
    page.keyboard.press("Enter")
    form = page.get_by_role("form", name="Edit centro")
    expect(form.get_by_label("Geofence id")).to_be_disabled()
    form.get_by_label("Latitude").fill("40.4165")
    form.get_by_label("Radius (m)").fill("80")
    screenshot(page, "geofences")
    form.get_by_label("Radius (m)").press("Enter")
    expect(page.get_by_role("status").filter(has_text="saved")).to_have_text(
        "Geofence centro saved.")
    with session_scope(console.engine) as session:
        saved = get_geofence(session, tenant=console.tenant, geofence_id="centro")
        kiosk = get_geofence(session, tenant=console.tenant, geofence_id="kiosk")
    assert saved is not None
    assert kiosk is not None
    assert saved.spec["shape"] == {"circle": {"lat": 40.4165, "lon": MADRID[1], "radius_m": 80}}
    assert kiosk.spec["shape"] == {"circle": {"lat": 40.4171, "lon": -3.7031, "radius_m": 25}}
    assert kiosk.spec["store"] == "centro"
    assert kiosk.spec["hours"] is None

    page.get_by_role("button", name="Edit kiosk").click()
    form = page.get_by_role("form", name="Edit kiosk")
    form.get_by_role("button", name="Delete").click()
    form.get_by_role("button", name="Delete kiosk").click()
    expect(page.get_by_role("status").filter(has_text="deleted")).to_contain_text(
        "Geofence kiosk deleted")
    expect(page.get_by_role("row").filter(has_text="kiosk")).to_have_count(0)


@pytest.mark.parametrize("role", ["marketer", "analyst"])
def test_a_role_without_stores_write_sees_the_map_read_only(
    page: Page, console: Console, role: str
) -> None:
    add_store(console.engine, console.tenant, centro=CIRCLE)
    add_fix(console.engine, console.tenant, location_consent=True, east=0.0004)
    sign_in(page, console, role)
    page.goto(console.page_url("geofences"))
    expect(page.locator(".geofence-label", has_text="centro")).to_be_visible()
    expect(page.get_by_text("does not see where app users are")).to_be_visible()
    expect(page.locator(".fix-marker")).to_have_count(0)
    expect(page.locator(".leaflet-pm-toolbar")).to_have_count(0)
    expect(page.get_by_role("button", name="New geofence")).to_have_count(0)
    page.get_by_role("button", name="Show centro").click()
    form = page.get_by_role("form", name="Geofence centro")
    expect(form.get_by_label("Radius (m)")).to_have_value("60")
    expect(form.get_by_label("Radius (m)")).to_be_disabled()
    expect(form.get_by_role("button", name="Save geofence")).to_have_count(0)
    expect(form.get_by_role("button", name="Delete")).to_have_count(0)
