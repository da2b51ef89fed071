"""The owner's pages: API keys, members and invitations, the audit log, dead letters;
and the same pages refused to roles that may not see them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from playwright.sync_api import Browser, Page, expect

from cloud.db import session_scope
from cloud.presence.crud import record_dead_letter
from tests.cloud.console.conftest import Console, screenshot, sign_in


def test_an_owner_makes_a_key_sees_it_once_and_revokes_it(page: Page, console: Console) -> None:
    sign_in(page, console)
    page.goto(console.page_url("keys"))
    page.get_by_label("What it is for").fill("web shop")
    page.get_by_role("button", name="Make a key").click()
    key = page.get_by_label("The key")
    expect(key).to_have_value(re.compile(r"^vk_[0-9a-f]{12}_"))
    row = page.get_by_role("row").filter(has_text="web shop")
    expect(row).to_contain_text("active")
    page.reload()
    expect(page.get_by_label("The key")).to_have_count(0)  # shown once
    screenshot(page, "keys")
    row = page.get_by_role("row").filter(has_text="web shop")
    row.get_by_role("button", name="Revoke").click()
    row.get_by_role("button", name="Really revoke").click()
    expect(row).to_contain_text("revoked")


def test_an_invited_person_joins_with_the_link_in_the_role_given(
    page: Page, console: Console, browser: Browser
) -> None:
    sign_in(page, console)
    page.goto(console.page_url("members"))
    invite = page.get_by_role("form", name="Invite a member")
    invite.get_by_label("Email address").fill("new.marketer@shop.example")
    invite.get_by_label("Role").select_option("marketer")
    invite.get_by_role("button", name="Invite").click()
    link = page.get_by_label("Invitation link").input_value()
    assert "/console/invitations/" in link
    screenshot(page, "members")
    other = browser.new_context()
    try:
        newcomer = other.new_page()
        newcomer.goto(link.replace("http://127.0.0.1:8000", console.url))
        expect(newcomer.get_by_text(f"join {console.tenant} as marketer")).to_be_visible()
        newcomer.get_by_label("Your name").fill("Nuria")
        newcomer.get_by_label("Choose a password").fill("a long pass phrase of mine")
        newcomer.get_by_label("The password again").fill("a long pass phrase of mine")
        newcomer.get_by_role("button", name=f"Join {console.tenant}").click()
        newcomer.wait_for_url(f"{console.url}/console/t/**")
        expect(newcomer.locator(".role-badge")).to_have_text("marketer")
    finally:
        other.close()
    page.reload()
    row = page.get_by_role("row").filter(has_text="new.marketer@shop.example")
    row.get_by_label("Role of new.marketer@shop.example").select_option("analyst")
    expect(row.get_by_label("Role of new.marketer@shop.example")).to_have_value("analyst")
    page.goto(console.page_url("audit"))
    log = page.get_by_role("table", name="Newest first")
    expect(log).to_contain_text("member.invite")
    role_change = page.get_by_role("row").filter(has_text="member.role")
    expect(role_change).to_contain_text(console.emails["owner"])
    changed = role_change.get_by_role("table", name="Fields changed")
    expect(changed.get_by_role("row")).to_have_count(2)  # the header and the role
    expect(changed.get_by_role("row").nth(1)).to_have_text('role"marketer""analyst"')
    screenshot(page, "audit")


def test_the_last_owner_cannot_leave_and_is_told_why(page: Page, console: Console) -> None:
    sign_in(page, console)
    page.goto(console.page_url("members"))
    row = page.get_by_role("row").filter(has_text=console.emails["owner"])
    row.get_by_role("button", name=f"Remove {console.emails['owner']}").click()
    row.get_by_role("button", name=f"Really remove {console.emails['owner']}").click()
    expect(page.get_by_role("alert")).to_contain_text("last owner")


def test_dead_letters_of_the_tenants_gateways_are_listed(page: Page, console: Console) -> None:
    with session_scope(console.engine) as session:
        record_dead_letter(session, topic=f"vitrina/v1/{console.tenant}/s1/g1/presence",
                           payload=b"not json", reason="invalid JSON at byte 0",
                           received_at=datetime.now(UTC))
        record_dead_letter(session, topic="vitrina/v1/someone-else/s1/g1/presence",
                           payload=b"x", reason="theirs", received_at=datetime.now(UTC))
        session.commit()
    sign_in(page, console, "store_operator")
    page.goto(console.page_url("dead-letters"))
    expect(page.get_by_role("table")).to_contain_text("invalid JSON at byte 0")
    expect(page.get_by_role("table")).not_to_contain_text("theirs")


def test_each_role_sees_only_its_pages(page: Page, console: Console) -> None:
    expected = {
        "analyst": {"keys": False, "members": False, "audit": True, "live": True},
        "marketer": {"keys": False, "members": False, "audit": False, "offers": True},
        "store_operator": {"keys": False, "audit": False, "stores": True, "geofences": True},
    }
    for role, pages in expected.items():
        sign_in(page, console, role)
        nav = page.get_by_role("navigation", name="Console")
        for slug, open_to_role in pages.items():
            response = page.goto(console.page_url(slug))
            assert response is not None
            assert response.status == (200 if open_to_role else 403), (role, slug)
            if not open_to_role:
                expect(page.get_by_role("alert")).to_contain_text(
                    f"is not open to your role ({role.replace('_', ' ')})")
            title = {"keys": "API keys", "members": "Members", "audit": "Audit log",
                     "live": "Live presence", "offers": "Offers & coupons",
                     "stores": "Stores & gateways", "geofences": "Geofences"}[slug]
            expect(nav.get_by_role("link", name=title)).to_have_count(1 if open_to_role else 0)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{console.url}/console/login")
