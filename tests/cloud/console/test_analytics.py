"""The analytics page as an analyst reads it: footfall of two stores over several days,
stored by the ingest stage's own code, shown per day, per store and per period with the
same figures the API answers; and a scenario's funnel with its holdout beside both A/B
arms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from playwright.sync_api import Locator, Page, expect
from sqlmodel import select

from cloud.db import session_scope
from cloud.ingest.batch import Inbound, write_batch
from cloud.messages.models import Message
from shared.presence import PresenceEvent, PseudonymScope
from tests.cloud.console.accessibility import violations
from tests.cloud.console.conftest import Console, screenshot, sign_in
from tests.cloud.console.seeding import ingest, run_journeys, seed_template
from tests.cloud.factories import (
    make_event,
    occupancy_payload,
    occupancy_topic,
    wifi_pseudonym,
)

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Seen:
    """One device's visit: where, how many days ago, at what time (UTC) and how long."""

    device: int
    store: str
    days_ago: int
    hour: int
    minutes: float
    scope: PseudonymScope = PseudonymScope.STABLE

    @property
    def day(self) -> date:
        return (TODAY - timedelta(days=self.days_ago)).date()

    def event(self, tenant: str) -> PresenceEvent:
        first = TODAY - timedelta(days=self.days_ago) + timedelta(hours=self.hour)
        return make_event(
            tenant=tenant, pseudonym=wifi_pseudonym(f"00:1e:c2:00:02:{self.device:02x}"),
            store=self.store, gateway=f"{self.store}-door", first_seen=first,
            last_seen=first + timedelta(minutes=self.minutes), scope=self.scope,
            sequence=self.days_ago)


#: Under a minute in range walks past; a minute or more visits. Device 1 comes back the
#: next day (a repeat visitor); device 5 changes its address daily (unknown); days 12
#: ago fall in the last 30 days but not in the last 7.
VISITS = [
    Seen(1, "s1", 2, 10, 20), Seen(2, "s1", 2, 10, 6), Seen(3, "s1", 2, 10, 0.5),
    Seen(4, "s1", 2, 15, 0.2), Seen(5, "s1", 2, 15, 40, PseudonymScope.DAILY),
    Seen(1, "s1", 1, 11, 8), Seen(6, "s1", 1, 11, 0.3),
    Seen(7, "s1", 12, 9, 3), Seen(8, "s1", 12, 9, 0.4),
    Seen(11, "s2", 3, 12, 2), Seen(12, "s2", 3, 12, 0.1), Seen(13, "s2", 3, 12, 70),
]
#: What those visits make, per store and day: (visitors, passers-by, new, repeat, unknown).
EXPECTED = {
    ("s1", 2): (3, 2, 2, 0, 1), ("s1", 1): (1, 1, 0, 1, 0), ("s1", 12): (1, 1, 1, 0, 0),
    ("s2", 3): (2, 1, 2, 0, 0),
}


def day_of(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).date().isoformat()


def days_ago_of(day: str) -> int:
    return (TODAY.date() - date.fromisoformat(day)).days


def api_get(page: Page, path: str, **params: str) -> list[dict[str, Any]]:
    """What the tenant's API answers to a GET, asked with the member's session."""
    answer: list[dict[str, Any]] = page.evaluate("""async ([path, params]) => {
        const context = JSON.parse(document.getElementById("console-context").textContent);
        const query = new URLSearchParams(params);
        return (await fetch(`/tenants/${context.tenant}${path}?${query}`)).json();
    }""", [path, params])
    return answer


def api_footfall(page: Page, days: int) -> list[dict[str, Any]]:
    """The footfall API's answer for the page's period of `days`."""
    since = TODAY - timedelta(days=days - 1)
    until = TODAY + timedelta(days=1)
    return api_get(page, "/analytics/footfall", since=since.isoformat(), until=until.isoformat())


def api_hourly(page: Page, day: str) -> list[dict[str, Any]]:
    """The hourly footfall API's answer for a day."""
    since = datetime.fromisoformat(f"{day}T00:00:00+00:00")
    until = since + timedelta(days=1)
    return api_get(page, "/analytics/footfall/hourly", since=since.isoformat(),
                   until=until.isoformat())


def hour_cells(table: Locator, hour: int) -> Locator:
    return table.get_by_role("row").filter(has_text=f"{hour:02d}:00").get_by_role("cell")


def figures(page: Page, title: str) -> Locator:
    """The table of a chart's figures, opened as a member does."""
    chart = page.get_by_role("figure", name=title)
    details = chart.locator("details")
    if details.get_attribute("open") is None:
        chart.get_by_text("Show the figures").click()
    return chart.get_by_role("table")


def day_row(table: Locator, days_ago: int) -> Locator:
    day = table.page.locator(f'time[datetime="{day_of(days_ago)}"]')
    return table.get_by_role("row").filter(has=day)


def canvas_width(chart: Locator) -> float:
    canvas = chart.locator("canvas")
    width: float = canvas.evaluate("canvas => canvas.getBoundingClientRect().width")
    return width


def kpi(page: Page, label: str) -> Locator:
    return page.get_by_role("group", name=label, exact=True).locator(".value")


def test_footfall_per_store_and_period_as_the_api_counts_it(page: Page, console: Console) -> None:
    ingest(console, [seen.event(console.tenant) for seen in VISITS])
    sign_in(page, console, "analyst")
    page.goto(console.page_url("analytics"))
    expect(kpi(page, "Visitors")).to_have_text("7")

    # The API agrees with what was seeded; the page's tables with the API.
    answered = {(row["store"], row["day"]): row for row in api_footfall(page, 30)}
    for (store, days_ago), (visitors, passers_by, new, repeat, unknown) in EXPECTED.items():
        row = answered[(store, day_of(days_ago))]
        assert (row["visitors"], row["passers_by"], row["new_visitors"], row["repeat_visitors"],
                row["unknown_visitors"]) == (visitors, passers_by, new, repeat, unknown)
    assert len(answered) == len(EXPECTED)
    per_day = figures(page, "Visitors and passers-by per day")
    expect(per_day.get_by_role("row")).to_have_count(1 + 30)
    for (_, day), row in answered.items():  # no two stores share a day here
        capture = f"{row['capture_rate'] * 100:.1f} %"
        expect(day_row(per_day, days_ago_of(day)).get_by_role("cell")).to_have_text(
            [str(row["visitors"]), str(row["passers_by"]), capture])
    kinds = figures(page, "New, repeat and unknown visitors per day")
    expect(day_row(kinds, 2).get_by_role("cell")).to_have_text(["2", "0", "1"])
    expect(day_row(kinds, 1).get_by_role("cell")).to_have_text(["0", "1", "0"])
    dwell = figures(page, "How long visitors stayed")
    expect(dwell.get_by_role("row").filter(has_text="1-5 min")).to_contain_text("2")
    expect(dwell.get_by_role("row").filter(has_text="5-15 min")).to_contain_text("2")
    expect(dwell.get_by_role("row").filter(has_text="over 60 min")).to_contain_text("1")
    expect(page.get_by_role("img", name="Visitors and passers-by per day").locator("canvas")
           ).to_be_visible()
    assert violations(page) == []
    screenshot(page, "analytics")

    # Per hour, of the busiest day unless another is chosen.
    hourly = {(row["store"], row["hour"][11:13]): row for row in api_hourly(page, day_of(2))
              if row["zone"] is None}
    assert {key: (row["visitors"], row["passers_by"]) for key, row in hourly.items()} == {
        ("s1", "10"): (2, 1), ("s1", "15"): (1, 1)}
    per_hour = figures(page, "Visitors and passers-by per hour")
    expect(per_hour.get_by_role("row")).to_have_count(1 + 24)
    expect(hour_cells(per_hour, 10)).to_have_text(["2", "1"])
    expect(hour_cells(per_hour, 15)).to_have_text(["1", "1"])
    expect(hour_cells(per_hour, 12)).to_have_text(["0", "0"])
    page.get_by_label("Day", exact=True).fill(day_of(3))
    expect(hour_cells(per_hour, 12)).to_have_text(["2", "1"])
    expect(hour_cells(per_hour, 10)).to_have_text(["0", "0"])
    assert f"day={day_of(3)}" in page.url

    # One store: the other's visits leave the figures, and the address keeps the choice.
    page.get_by_label("Store").select_option("s2")
    expect(kpi(page, "Visitors")).to_have_text("2")
    expect(day_row(per_day, 3).get_by_role("cell")).to_have_text(["2", "1", "66.7 %"])
    expect(day_row(per_day, 2).get_by_role("cell")).to_have_text(["0", "0", "—"])
    assert "store=s2" in page.url
    page.reload()
    expect(page.get_by_label("Store")).to_have_value("s2")
    expect(kpi(page, "Visitors")).to_have_text("2")

    # The last 7 days: the visits of 12 days ago are out.
    page.get_by_label("Store").select_option("")
    page.get_by_label("Period").select_option("7")
    expect(kpi(page, "Visitors")).to_have_text("6")
    per_day = figures(page, "Visitors and passers-by per day")  # closed again by the reload
    expect(per_day.get_by_role("row")).to_have_count(1 + 7)
    assert "days=7" in page.url
    assert sum(row["visitors"] for row in api_footfall(page, 7)) == 6
    page.get_by_label("Period").select_option("90")
    expect(per_day.get_by_role("row")).to_have_count(1 + 90)
    expect(kpi(page, "Visitors")).to_have_text("7")

    # A narrower window redraws the charts to the width they are given.
    chart = page.get_by_role("img", name="Visitors and passers-by per day")
    wide = canvas_width(chart)
    page.set_viewport_size({"width": 480, "height": 900})
    # Redrawn once the drawing has left the old width and fits the box it is now given
    # (how much narrower the box gets is the layout's business, not the chart's).
    page.wait_for_function("([chart, wide]) => {"
                           " const drawn = chart.querySelector('canvas')"
                           "   .getBoundingClientRect().width;"
                           " return drawn < wide && drawn <= chart.clientWidth; }",
                           arg=[chart.element_handle(), wide])
    assert page.evaluate("document.documentElement.scrollWidth") <= 480  # nothing spills over


def seed_occupancy(console: Console, day: datetime) -> None:
    """Two gateways' reports of one store, stored by the ingest stage's code: half an hour
    at 10:00 (2 and 1.5 people), one minute at 11:00 (6 people)."""
    reports = [
        Inbound(occupancy_topic(console.tenant, "s1", gateway), occupancy_payload(
            tenant=console.tenant, store="s1", gateway=gateway, zones={"floor": people},
            minute=day + timedelta(hours=10, minutes=minute)))
        for gateway, people in (("g1", 2.0), ("g2", 1.5)) for minute in range(30)
    ] + [Inbound(occupancy_topic(console.tenant, "s1", "g1"), occupancy_payload(
        tenant=console.tenant, store="s1", gateway="g1", zones={"floor": 6.0},
        minute=day + timedelta(hours=11)))]
    write_batch(console.engine, reports, received_at=console.clock(), tenants={console.tenant})


def test_the_message_funnel_shows_the_holdout_beside_both_arms(
    page: Page, console: Console
) -> None:
    """(With people present per hour of a day, from occupancy reports and no footfall: a
    page of its own would cost a second console.)"""
    seed_template(console)
    customers = run_journeys(console)
    with session_scope(console.engine) as session:
        messages = session.exec(select(Message)).all()
    day = TODAY - timedelta(days=1)
    seed_occupancy(console, day)
    sign_in(page, console, "analyst")
    page.goto(console.page_url("analytics") + f"?scenario=cart&day={day.date().isoformat()}")
    expect(page.get_by_text("No visits in this period yet.")).to_be_visible()
    people = figures(page, "People present per hour")  # gateways added, minutes averaged
    expect(hour_cells(people, 10)).to_have_text(["3.5"])
    expect(hour_cells(people, 11)).to_have_text(["6.0"])
    expect(hour_cells(people, 12)).to_have_text(["—"])
    expect(page.get_by_text("Busiest minute: 6.0 people.")).to_be_visible()
    scenarios = page.get_by_role("table", name="Messages per scenario in this period")
    sent = sum(message.sent_at is not None for message in messages)
    opened = sum(message.opened_at is not None for message in messages)
    converted = sum(message.converted_at is not None for message in messages)
    expect(scenarios.get_by_role("row").filter(has_text="cart").get_by_role("cell")).to_have_text(
        ["cart", str(len(messages)), "0", str(sent), "0", str(opened), "0", str(converted),
         str(customers - len(messages))])
    messages_section = page.get_by_role("region", name="Messages", exact=True)
    side_by_side = messages_section.get_by_role("table", name="Journeys by group, side by side")
    expect(side_by_side.get_by_role("columnheader")).to_have_text(
        ["Measure", "Holdout (nothing sent)", "Variant a", "Variant b"])
    for measure in ("Treated conversion", "Holdout conversion", "Uplift over the holdout"):
        expect(messages_section.locator(".kpi").filter(has_text=measure)).to_be_visible()
    funnel = messages_section.get_by_role("table", name="Messages per step and variant")
    for variant in ("a", "b"):
        mine = [message for message in messages if message.variant == variant]
        expect(funnel.get_by_role("row").filter(has_text=f"remind{variant}")
               .get_by_role("cell").nth(2)).to_have_text(str(len(mine)))
    assert violations(page) == []

