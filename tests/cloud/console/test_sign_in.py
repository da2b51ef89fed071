"""Signing in, out and back, as a person does in the browser."""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import Page, expect

from tests.cloud.console.conftest import Console, screenshot, sign_in


def test_an_owner_signs_in_lands_on_live_presence_and_signs_out(
    page: Page, console: Console
) -> None:
    page.goto(f"{console.url}/console")
    expect(page).to_have_url(f"{console.url}/console/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "sign-in")
    sign_in(page, console)
    expect(page).to_have_url(console.page_url("live"))
    expect(page.get_by_role("heading", name="Live presence", level=1)).to_be_visible()
    nav = page.get_by_role("navigation", name="Console")
    for title in ("Live presence", "Analytics", "Stores & gateways", "Geofences",
                  "Offers & coupons", "Scenarios", "Templates", "Dead letters", "API keys",
                  "Members", "Audit log"):
        expect(nav.get_by_role("link", name=title)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{console.url}/console/login")
    page.goto(console.page_url("offers"))
    expect(page).to_have_url(
        f"{console.url}/console/login?next=/console/t/{console.tenant}/offers")


def test_a_wrong_password_is_refused_with_a_message(page: Page, console: Console) -> None:
    page.goto(f"{console.url}/console/login")
    page.get_by_label("Email address").fill(console.emails["owner"])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong email address or password")


def test_signing_in_goes_back_to_the_page_asked_for(page: Page, console: Console) -> None:
    page.goto(console.page_url("audit"))
    page.get_by_label("Email address").fill(console.emails["owner"])
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(console.page_url("audit"))


def test_an_idle_session_ends_and_the_page_says_to_sign_in_again(
    page: Page, console: Console
) -> None:
    sign_in(page, console)
    page.goto("about:blank")  # the landing page's own requests would find the session ended first
    console.clock.offset = timedelta(hours=2)  # past the hour a session may stay idle
    page.goto(console.page_url("offers"))
    expect(page).to_have_url(
        f"{console.url}/console/login?next=/console/t/{console.tenant}/offers")
