"""Every console page checked by axe-core (the accessibility engine, vendored from npm at a
pinned version) for serious and critical problems, and used from the keyboard alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from cloud.api.console.pages import PAGES
from tests.cloud.console.conftest import TIMEOUT_MS, Console, sign_in

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
#: What a member may not be stopped by; "moderate" and "minor" findings are reported by
#: the test's message when it fails for a serious one, not counted.
BLOCKING = {"serious", "critical"}
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def violations(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=AXE)
    found: list[dict[str, Any]] = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
        ".violations", RULES)
    return found


def describe(found: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{item['impact']}: {item['id']} ({item['help']}) at "
        f"{[node['target'] for node in item['nodes']][:3]}" for item in found)


@pytest.fixture
def axe_page(browser: Browser) -> Page:
    """A profile that lets the test add axe's script despite the page's content policy
    (the policy itself is exercised by every other browser test)."""
    context = browser.new_context(bypass_csp=True, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def test_no_page_has_a_serious_accessibility_problem(axe_page: Page, console: Console) -> None:
    page = axe_page
    page.goto(f"{console.url}/console/login")
    problems = {"login": violations(page)}
    sign_in(page, console)
    for item in PAGES:
        page.goto(console.page_url(item.slug))
        page.wait_for_load_state("networkidle")
        expect(page.locator("#app .loading")).to_have_count(0)
        problems[item.slug] = violations(page)
    page.goto(f"{console.url}/console/account")
    problems["account"] = violations(page)
    serious = {slug: [item for item in found if item["impact"] in BLOCKING]
               for slug, found in problems.items()}
    report = "\n".join(f"{slug}:\n{describe(found)}" for slug, found in problems.items() if found)
    assert not any(serious.values()), report
    # The scan does see what the page shows: an unlabelled field put in is reported.
    page.evaluate("document.getElementById('app').append(document.createElement('input'))")
    assert "label" in {item["id"] for item in violations(page)}
    page.context.close()


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
