"""The templates page as a marketer uses it: an SMS written with its preview, encoding
and segment count following the text, a mistake shown at its part, saved and deleted; an
email previewed in its sandboxed frame; and read-only for an analyst."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import Page, expect

from cloud.db import session_scope
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec
from tests.cloud.console.accessibility import violations
from tests.cloud.console.conftest import Console, screenshot, sign_in

#: Past 70 UTF-16 units with a character outside GSM-7: two UCS-2 segments.
LONG_UCS2 = "Hola {{ customer.first_name }} ✨ " + "tu secadora te espera en la tienda. " * 2


def sms_size(page: Page) -> dict[str, str]:
    size = page.get_by_role("complementary", name="Preview").locator("dl.sms-count")
    terms = size.locator("dt").all_inner_texts()
    return dict(zip([term.lower() for term in terms], size.locator("dd").all_inner_texts(),
                    strict=True))


def test_a_marketer_writes_an_sms_with_its_segments_and_an_email(
    page: Page, console: Console
) -> None:
    sign_in(page, console, "marketer")
    page.goto(console.page_url("templates"))
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Key", exact=True).fill("cart")
    page.get_by_label("Channel").select_option("sms")
    preview = page.get_by_role("complementary", name="Preview")
    expect(preview.locator(".sms-bubble")).to_have_text(
        "Juan, 20 % off Secadora EcoDry 8 kg: https://vtr.example.com/c/9fK2mQ")
    expect(preview).to_contain_text("GSM-7")
    text = page.get_by_label("Text", exact=True)

    text.fill("Hola {{ customer.nick }}")
    field = page.locator(".field").filter(has=text)
    expect(field.locator(".field-error")).to_contain_text(
        "line 1: unknown field 'customer.nick'")
    text.fill(LONG_UCS2)
    expect(field.locator(".field-error")).to_have_count(0)
    expect(preview.locator(".sms-bubble")).to_contain_text("Hola Juan ✨ tu secadora")
    expect(preview.get_by_text("UCS-2", exact=True)).to_be_visible()
    size = sms_size(page)
    assert (size["encoding"], size["segments"]) == ("UCS-2", "2")
    rendered = "Hola Juan ✨ " + "tu secadora te espera en la tienda. " * 2
    assert size["characters"] == str(len(rendered))
    screenshot(page, "templates")
    assert violations(page) == []
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Template cart (sms, es-ES) saved: version 1.")

    page.get_by_role("link", name="← All templates").click()
    page.get_by_role("link", name="New template").click()
    page.get_by_label("Key", exact=True).fill("cart")
    page.get_by_label("Channel").select_option("email")
    frame = page.frame_locator("iframe[title='Email preview']")
    expect(frame.get_by_role("heading")).to_have_text("Hi Juan")
    page.get_by_label("Subject").fill("{{ customer.first_name }}, your dryer")
    expect(preview.locator(".email-subject")).to_contain_text("Juan, your dryer")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("status").first).to_contain_text("saved: version 1")

    page.get_by_role("link", name="← All templates").click()
    rows = page.get_by_role("row").filter(has_text="cart")
    expect(rows).to_have_count(2)
    page.get_by_role("link", name="Open cart (sms, es-ES)").click()
    expect(page.get_by_label("Text", exact=True)).to_have_value(LONG_UCS2)
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Delete cart (sms, es-ES)").click()
    expect(page.get_by_role("status")).to_contain_text("Template cart (sms, es-ES) deleted.")
    expect(page.get_by_role("row").filter(has_text="cart")).to_have_count(1)


def test_an_analyst_sees_templates_and_previews_but_changes_nothing(
    page: Page, console: Console
) -> None:
    with session_scope(console.engine) as session:
        save_template(session, tenant=console.tenant, key="welcome", now=datetime.now(UTC),
                      spec=TemplateSpec.model_validate({
                          "channel": "push", "locale": "es-ES",
                          "parts": {"title": "Hola {{ customer.first_name }}",
                                    "body": "Bienvenida a {{ store.name }}"}}))
        session.commit()
    sign_in(page, console, "analyst")
    response = page.goto(console.page_url("templates"))
    assert response is not None
    # Previews show the images templates name, from wherever the shop keeps them.
    assert "img-src 'self' data: https:;" in response.headers["content-security-policy"]
    expect(page.get_by_text("Your role (analyst) can look but not change this")).to_be_visible()
    expect(page.get_by_role("link", name="New template")).to_have_count(0)
    page.get_by_role("link", name="Open welcome (push, es-ES)").click()
    expect(page.get_by_label("Title", exact=True)).to_have_js_property("readOnly", True)
    notification = page.get_by_role("img", name="Notification: Hola Juan.")
    expect(notification).to_contain_text("Bienvenida a Vitrina Centro")
    expect(page.get_by_role("button", name="Save template")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
