"""Every console page checked by axe-core (the accessibility engine, vendored from npm at a
pinned version) for serious and critical problems, and used from the keyboard alone."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from cloud.api.console.pages import PAGES
from tests.cloud.console.accessibility import violations
from tests.cloud.console.conftest import Console, sign_in

#: What a member may not be stopped by; every page of the console is checked for these
#: (the pages' own tests check theirs for every impact).
BLOCKING = frozenset({"serious", "critical"})


def test_no_page_has_a_serious_accessibility_problem(page: Page, console: Console) -> None:
    page.goto(f"{console.url}/console/login")
    problems = {"login": violations(page, impacts=BLOCKING)}
    sign_in(page, console)
    for item in PAGES:
        page.goto(console.page_url(item.slug))
        page.wait_for_load_state("networkidle")
        expect(page.locator("#app .loading")).to_have_count(0)
        problems[item.slug] = violations(page, impacts=BLOCKING)
    page.goto(f"{console.url}/console/account")
    problems["account"] = violations(page, impacts=BLOCKING)
    assert not any(problems.values()), {slug: found for slug, found in problems.items() if found}
    # The scan does see what the page shows: an unlabelled field put in is reported.
    page.evaluate("document.getElementById('app').append(document.createElement('input'))")
    assert any(": label: " in found for found in violations(page))


def test_the_console_works_from_the_keyboard(page: Page, console: Console) -> None:
    page.goto(f"{console.url}/console/login")
    expect(page.get_by_label("Email address")).to_be_focused()  # ready to type
    page.keyboard.type(console.emails["marketer"])
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse battery staple")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{console.url}/console/t/**")
    page.goto(console.page_url("offers"))
    page.keyboard.press("Tab")  # the skip link comes first, past the header and the nav
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.get_by_role("button", name="New offer").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Key", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.keyboard.press("Tab")
    nav = page.get_by_role("navigation", name="Console")
    nav.get_by_role("link", name="Templates").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(console.page_url("templates"))
