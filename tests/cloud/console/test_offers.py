"""The offers page as a marketer uses it: an offer made, refused with the field named,
edited and deactivated; complement rules; and read-only for a role that may not."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.cloud.console.conftest import Console, screenshot, sign_in

#: The offer form's switch for coupons given back by a cancelled order.
REISSUE = "Give coupons back when the order is cancelled"


def fill_offer(page: Page, **fields: str) -> None:
    dialog = page.get_by_role("dialog")
    for label, value in fields.items():
        dialog.get_by_label(label, exact=True).fill(value)


def test_a_marketer_makes_edits_and_deactivates_an_offer(page: Page, console: Console) -> None:
    sign_in(page, console, "marketer")
    page.goto(console.page_url("offers"))
    page.get_by_role("button", name="New offer").click()
    fill_offer(page, **{"Key": "dryers-20", "Name": "Dryers 20%", "Discount (%)": "20",
                        "Category": "dryers", "Product name": "Heat-pump dryer 9 kg",
                        "Product page": "https://shop.example/dryers",
                        "Image": "https://cdn.shop.example/dryer.jpg", "Price": "-5"})
    page.get_by_role("button", name="Save offer").click()
    alert = page.get_by_role("dialog").get_by_role("alert")
    expect(alert).to_contain_text("Offer not saved")
    expect(alert).to_contain_text("price")
    fill_offer(page, Price="699.00")
    page.get_by_role("dialog").get_by_label(REISSUE).check()
    page.get_by_role("button", name="Save offer").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("status")).to_contain_text("Offer dryers-20 saved.")
    row = page.get_by_role("row").filter(has_text="dryers-20")
    expect(row).to_contain_text("Dryers 20%")
    expect(row).to_contain_text("20 %")
    screenshot(page, "offers")
    page.get_by_role("button", name="Edit dryers-20").click()
    expect(page.get_by_role("dialog").get_by_label("Key", exact=True)).to_be_disabled()
    expect(page.get_by_role("dialog").get_by_label(REISSUE)).to_be_checked()
    fill_offer(page, Name="Dryers, winter")
    page.get_by_role("button", name="Save offer").click()
    expect(row).to_contain_text("Dryers, winter")
    row.get_by_role("button", name="Deactivate").click()
    row.get_by_role("button", name="Deactivate dryers-20").click()
    expect(row).to_contain_text("inactive")
    row.get_by_role("button", name="Coupons of dryers-20").click()
    expect(page.get_by_role("dialog")).to_contain_text("No coupon issued yet.")


def test_complement_rules_are_added_and_saved(page: Page, console: Console) -> None:
    sign_in(page, console, "marketer")
    page.goto(console.page_url("offers"))
    form = page.get_by_role("form", name="Complement rules")
    form.get_by_role("button", name="Add a rule").click()
    form.get_by_label("Bought from").fill("washers")
    form.get_by_label("Offer from").fill("washers")
    form.get_by_role("button", name="Save rules").click()
    expect(form.get_by_role("alert")).to_contain_text("a category cannot complement itself")
    form.get_by_label("Offer from").fill("dryers")
    form.get_by_role("button", name="Save rules").click()
    expect(form.get_by_role("status")).to_contain_text("Complement rules saved.")
    page.reload()
    expect(page.get_by_role("form", name="Complement rules").get_by_label("Offer from")
           ).to_have_value("dryers")


def test_a_store_operator_sees_offers_but_changes_nothing(page: Page, console: Console) -> None:
    sign_in(page, console, "store_operator")
    page.goto(console.page_url("offers"))
    expect(page.get_by_text("Your role (store operator) can look but not change this").first
           ).to_be_visible()
    expect(page.get_by_role("button", name="New offer")).to_have_count(0)
    expect(page.get_by_role("button", name="Add a rule")).to_have_count(0)
    refused = page.evaluate("""async () => {
        const context = JSON.parse(document.getElementById("console-context").textContent);
        const answer = await fetch(`/tenants/${context.tenant}/complements`, {
            method: "PUT", body: "[]", headers: {"Content-Type": "application/json",
            "X-CSRF-Token": context.csrf_token}});
        return [answer.status, (await answer.json()).detail];
    }""")
    assert refused == [403, "a store operator may not do this (it needs offers.write)"]
