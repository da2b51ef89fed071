"""The live page as an analyst watches it: presence stored by the ingest stage's own code
while the page is open moves the counts and the event list without a reload, and the
page says when its stream drops and comes back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from playwright.sync_api import Page, expect

from cloud.api.live import live_hub
from cloud.ingest.batch import Inbound, write_batch
from cloud.presence.live import short_pseudonym
from shared.presence import PresenceEvent, Transition
from tests.cloud.console.conftest import Console, screenshot, sign_in
from tests.cloud.console.seeding import ingest
from tests.cloud.factories import (
    make_event,
    status_payload,
    status_topic,
    wifi_pseudonym,
)


def report_status(console: Console, *, online: bool, sent_at: datetime, store: str = "s1",
                  gateway: str = "g1", **fields: Any) -> None:
    inbound = Inbound(status_topic(console.tenant, store, gateway), status_payload(
        tenant=console.tenant, store=store, gateway=gateway, online=online, sent_at=sent_at,
        **fields))
    write_batch(console.engine, [inbound], received_at=console.clock())


def visit(console: Console, who: str, transition: Transition, zone: str,
          seconds_ago: int = 5) -> PresenceEvent:
    now = console.clock()
    return make_event(tenant=console.tenant, pseudonym=wifi_pseudonym(f"00:1e:c2:{who}"),
                      transition=transition, zone=zone, first_seen=now - timedelta(minutes=1),
                      last_seen=now - timedelta(seconds=seconds_ago))


def end_streams_for_a_moment(console: Console) -> None:
    """What a dropped connection looks like to the page: the server ends its streams."""
    assert console.app is not None
    hub = live_hub(console.app)
    assert hub.loop is not None
    for feed in list(hub.feeds.values()):
        for listener in list(feed.listeners):
            hub.loop.call_soon_threadsafe(listener.end, "the test ended it")


def test_presence_moves_the_counts_without_a_reload(page: Page, console: Console) -> None:
    report_status(console, online=True, sent_at=console.clock())
    sign_in(page, console, "analyst")
    page.goto(console.page_url("live"))
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    store = page.get_by_role("region", name="s1")
    expect(store.get_by_role("group", name="Gateways online")).to_have_text("1 of 1Gateways online")
    # One polite live region, a summary renewed at most once a minute (not per event).
    summary = page.locator("[aria-live]")
    expect(summary).to_have_count(1)
    expect(summary).to_have_text("0 devices present now in 1 store; 0 devices entered in the "
                                 "last hour.")
    ingest(console, [visit(console, "aa:00:01", Transition.ENTER, "entrance"),
                     visit(console, "aa:00:02", Transition.ENTER, "entrance"),
                     visit(console, "aa:00:03", Transition.ENTER, "tills")])
    entrance = store.get_by_role("row").filter(has_text="entrance")
    expect(entrance).to_contain_text("2")
    expect(store.get_by_role("row").filter(has_text="tills")).to_contain_text("1")
    expect(store.get_by_role("group", name="Devices present")).to_contain_text("3")
    expect(store.get_by_role("group", name="Entered in the last hour")).to_contain_text("3")
    events = page.get_by_role("list", name="Newest presence events, newest first")
    expect(events.get_by_role("listitem")).to_have_count(3)
    expect(events).to_contain_text(short_pseudonym(wifi_pseudonym("00:1e:c2:aa:00:01")))
    screenshot(page, "live")
    end_streams_for_a_moment(console)
    expect(page.get_by_role("status").filter(has_text="reconnecting")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    ingest(console, [visit(console, "aa:00:01", Transition.EXIT, "entrance", seconds_ago=1)])
    expect(entrance).to_contain_text("1")
    expect(events.get_by_role("listitem").first).to_contain_text("left")
    expect(events.get_by_role("listitem")).to_have_count(4)
