from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from cloud.templates import (
    Coupon,
    Currency,
    Customer,
    Money,
    PersonalisationContext,
    Product,
    RenderedEmail,
    RenderedPush,
    RenderedText,
    SmsEncoding,
    Template,
    TemplateError,
    TemplateSpec,
    compile_template,
    preview,
    render,
    sample_context,
)
from cloud.templates.formatting import Locale

UNSUBSCRIBE_HTML = '<a href="{{ unsubscribe_url }}">Baja</a>'
UNSUBSCRIBE_TEXT = "Baja: {{ unsubscribe_url }}"
SCRIPT_NAME = "<script>alert('x')</script>"


def _template(channel: str, parts: dict[str, str], locale: str = "es-ES") -> Template:
    return compile_template(
        TemplateSpec.model_validate({"channel": channel, "locale": locale, "parts": parts})
    )


def _context(locale: Locale = Locale.ES_ES, **changes: Any) -> PersonalisationContext:
    return sample_context(locale).model_copy(update=changes)


EMAIL = _template("email", {
    "subject": "{{ customer.first_name }}, {{ loyalty.credit|money }} para ti",
    "html": "<p>Hola {{ customer.first_name }} de {{ store.name }}</p>" + UNSUBSCRIBE_HTML,
    "text": "Hola {{ customer.first_name }} de {{ store.name }}\n" + UNSUBSCRIBE_TEXT,
})


def test_email_renders_every_part() -> None:
    message = render(EMAIL, sample_context(Locale.ES_ES))
    assert message == RenderedEmail(
        subject="Juan, 27,00\u00a0€ para ti",
        html='<p>Hola Juan de Vitrina Centro</p>'
             '<a href="https://shop.example.com/unsubscribe/9fK2mQ">Baja</a>',
        text="Hola Juan de Vitrina Centro\nBaja: https://shop.example.com/unsubscribe/9fK2mQ",
    )


def test_html_parts_escape_and_text_parts_do_not() -> None:
    context = _context(
        customer=Customer(first_name=SCRIPT_NAME, last_name="x"),
        store=sample_context(Locale.ES_ES).store.model_copy(  # type: ignore[union-attr]
            update={"name": "Tom & Jerry's"}
        ),
    )
    message = render(EMAIL, context)
    assert isinstance(message, RenderedEmail)
    assert message.html.startswith(
        "<p>Hola &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; de Tom &amp; Jerry&#39;s</p>"
    )
    assert "<script>" not in message.html
    assert message.text.startswith(f"Hola {SCRIPT_NAME} de Tom & Jerry's\n")
    assert message.subject.startswith(SCRIPT_NAME)
    push = _template("push", {"title": "{{ customer.first_name }}", "body": "b"})
    assert render(push, context) == RenderedPush("push", title=SCRIPT_NAME, body="b")
    sms = render(_template("sms", {"text": "{{ customer.first_name }}"}), context)
    assert isinstance(sms, RenderedText)
    assert sms.text == SCRIPT_NAME


def test_push_and_web_push() -> None:
    parts = {
        "title": "{{ product.name }}",
        "body": "{{ offer.discount_percent|percent }} hasta el "
                "{{ coupon.expires_at|datetime('long') }}",
        "image_url": "{{ product.image_url }}",
        "deep_link": "vitrina://p?c={{ coupon.code }}",
    }
    for channel in ("push", "web_push"):
        assert render(_template(channel, parts), sample_context(Locale.ES_ES)) == RenderedPush(
            channel=channel,
            title="Secadora EcoDry 8 kg",
            body="20\u00a0% hasta el 2 de junio de 2025, 23:59",
            image_url="https://cdn.shop.example.com/p/ecodry-8.jpg",
            deep_link="vitrina://p?c=SECA20-7QX",
        )


def test_moments_show_on_the_customers_clock_in_the_templates_locale() -> None:
    template = _template(
        "sms", {"text": "{{ coupon.expires_at|datetime('short') }} {{ product.price|money }}"},
        locale="pt-BR",
    )
    context = PersonalisationContext(
        customer=Customer(first_name="Ana", last_name="Silva", time_zone="America/Sao_Paulo"),
        coupon=Coupon(code="X", expires_at=datetime(2025, 1, 1, 2, 30, tzinfo=UTC)),
        product=Product(
            name="p", url="https://x.example/p", image_url="https://x.example/i.png",
            price=Money(amount=Decimal("1299.9"), currency=Currency.BRL),
        ),
    )
    message = render(template, context)
    assert isinstance(message, RenderedText)
    # 02:30 UTC on New Year's Day is 23:30 on New Year's Eve in São Paulo; SMS spaces
    # are plain, so the text stays GSM-7.
    assert message.text == "31/12/2024 23:30 R$ 1.299,90"
    assert message.count.encoding is SmsEncoding.GSM7


def test_a_missing_field_is_named() -> None:
    context = PersonalisationContext(customer=Customer(first_name="Ana", last_name="Ruiz"))
    with pytest.raises(TemplateError) as caught:
        render(EMAIL, context)
    assert str(caught.value) == (
        "subject: missing field 'loyalty.credit'; the template needs loyalty.credit, "
        "store.name, unsubscribe_url"
    )
    assert (caught.value.part, caught.value.field) == ("subject", "loyalty.credit")


def test_preview_uses_the_sample_and_warns_about_sms_cost() -> None:
    template = _template("sms", {
        "text": "Hola {{ customer.first_name }}, tu cupón {{ coupon.code }} caduca el "
                "{{ coupon.expires_at|date('short') }}: {{ link }}",
    })
    shown = preview(template)
    assert shown.message == RenderedText(
        text="Hola Juan, tu cupón SECA20-7QX caduca el 2/6/25: https://vtr.example.com/c/9fK2mQ",
        count=shown.message.count,  # type: ignore[union-attr]
    )
    assert shown.warnings == (
        "text: 2 SMS segments here (UCS-2, 81 code units), up to 3 for the longest values",
        "text: 'ó' (U+00F3) forces UCS-2, 70 characters a segment instead of 160",
    )


def test_preview_of_a_gsm7_sms() -> None:
    template = _template("sms", {"text": "Code {{ coupon.code }}: {{ link }}"}, locale="en-GB")
    assert preview(template).warnings == (
        "text: 1 SMS segment here (GSM-7, 49 septets), up to 1 for the longest values",
    )


def test_preview_lays_a_partial_context_over_the_sample() -> None:
    template = _template("sms", {"text": "Hola {{ customer.first_name }} 😀ç"})
    shown = preview(template, {"customer": {"first_name": "Zoë"}})
    assert isinstance(shown.message, RenderedText)
    assert shown.message.text == "Hola Zoë 😀ç"
    assert shown.warnings[1] == (
        "text: 'ë' (U+00EB), '😀' (U+1F600), 'ç' (U+00E7) force UCS-2, "
        "70 characters a segment instead of 160"
    )


def test_preview_warns_about_cut_push_texts() -> None:
    template = _template("push", {
        "title": "¡Hola {{ customer.first_name }}! Mira esto",
        "body": "{{ product.name }} ({{ product.price|money }}) en {{ store.name }}",
    })
    # Title: 6 + 30 + 11; body: 60 + 2 + 16 ("9.999.999,99 US$") + 5 + 60.
    assert preview(template).warnings == (
        "title: 21 characters here, up to 47 for the longest values; a collapsed "
        "notification shows about 40",
        "body: 49 characters here, up to 143 for the longest values; a collapsed "
        "notification shows about 120",
    )
    quiet = _template("push", {"title": "Hola {{ customer.first_name }}", "body": "b"})
    assert preview(quiet).warnings == ()


def test_preview_warns_about_long_subjects() -> None:
    # 30 + 2 + 16 + 8 characters at the longest: no warning.
    assert preview(EMAIL).warnings == ()
    long = _template("email", {
        "subject": "{{ customer.first_name }} {{ customer.last_name }}, tu regalo",
        "html": UNSUBSCRIBE_HTML, "text": UNSUBSCRIBE_TEXT,
    })
    assert preview(long).warnings == (
        "subject: 22 characters here, up to 82 for the longest values; an inbox list shows "
        "about 60",
    )


def test_preview_refuses_invalid_values_and_missing_sections() -> None:
    template = _template("sms", {"text": "{{ coupon.code }}"})
    with pytest.raises(ValidationError):
        preview(template, {"coupon": {"code": "lower case"}})
    with pytest.raises(TemplateError) as caught:
        preview(template, {"coupon": None})
    assert str(caught.value) == (
        "text: missing field 'coupon.code'; the template needs coupon.code"
    )
