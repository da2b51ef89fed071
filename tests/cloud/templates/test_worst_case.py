from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

from cloud.templates import PersonalisationContext, TemplateSpec, compile_template, render
from cloud.templates.analysis import analyse
from cloud.templates.context import FIELDS
from cloud.templates.formatting import Locale
from cloud.templates.rendering import RenderedPush, RenderedText
from cloud.templates.sandbox import Flavour, environment
from cloud.templates.sms import count_sms, gsm7_septets, ucs2_units
from cloud.templates.worst_case import WORST_ANY, WORST_GSM7, field_worst, longest
from tests.cloud.templates.strategies import contexts


def _longest(source: str, locale: Locale = Locale.ES_ES, **options: bool) -> str | None:
    env = environment(locale, Flavour.TEXT)
    tree = analyse("body", source, env).tree
    cost = ucs2_units if options.pop("by_units", False) else len
    return longest(tree, locale, cost=cost, **options)


def test_fields_at_their_longest() -> None:
    first_name = FIELDS["customer.first_name"]
    assert field_worst(first_name, gsm7_only=False) == WORST_ANY * 30
    assert field_worst(first_name, gsm7_only=True) == WORST_GSM7 * 30
    assert field_worst(FIELDS["coupon.code"], gsm7_only=True) == "W" * 20
    assert field_worst(FIELDS["link"], gsm7_only=False) == "W" * 60
    assert field_worst(FIELDS["offer.discount_percent"], gsm7_only=False) == "100"


def test_literals_fields_and_filters() -> None:
    assert _longest("Hola") == "Hola"
    assert _longest("Hola {{ customer.first_name }}!") == "Hola " + WORST_ANY * 30 + "!"
    assert _longest("{{ coupon.expires_at | date('long') }}") == "28 de septiembre de 2000"
    assert _longest("{{ product.price | money }}", Locale.EN_US) == "R$9,999,999.99"
    assert _longest("{{ offer.discount_percent | percent }}") == "100\u00a0%"
    assert _longest("{{ 42 }}{{ offer.discount_percent > 3 }}") == "42False"


def test_conditions_take_the_costliest_branch() -> None:
    source = "{% if link %}short{% elif store.name %}much longer{% else %}mid{% endif %}"
    assert _longest(source) == "much longer"
    assert _longest("a{% if link %}bb{% endif %}") == "abb"
    assert _longest("{{ 'x' if link else store.name }}") == WORST_ANY * 60
    assert _longest("{{ store.name or 'x' }}") == WORST_ANY * 60


def test_gsm7_only_leaves_out_what_gsm7_cannot_carry() -> None:
    source = "{% if link %}cupón de {{ store.name }}{% else %}code{% endif %}"
    assert _longest(source, gsm7_only=True) == "code"
    assert _longest(source) == "cupón de " + WORST_ANY * 60
    assert _longest("¡Hola!{% if link %} ó{% endif %} ñ", gsm7_only=True) == "¡Hola! ñ"
    assert _longest("cupón", gsm7_only=True) is None
    # The worst GSM-7 rendering of free text uses the two-septet euro sign.
    assert _longest("{{ customer.first_name }}", gsm7_only=True) == "€" * 30


def test_unit_cost_counts_emoji_twice() -> None:
    assert ucs2_units(_longest("{{ customer.first_name }}", by_units=True) or "") == 60


def test_plain_spaces_for_sms() -> None:
    env = environment(Locale.FR_FR, Flavour.SMS)
    tree = analyse("text", "{{ product.price | money }}", env).tree
    assert longest(tree, Locale.FR_FR, cost=len, plain_spaces=True) == "9 999 999,99 $US"


SMS_SOURCES = [
    "Hola {{ customer.first_name }}, tu cupón {{ coupon.code }} "
    "(-{{ offer.discount_percent|percent }}) caduca el {{ coupon.expires_at|datetime('short') }}: "
    "{{ link }}",
    "{% if offer.discount_percent > 30 %}BIG {{ product.price|money }}{% else %}{{ store.name }}"
    "{% endif %} {{ coupon.expires_at|date('long') }} {{ link }}",
    "Code {{ coupon.code }}: {{ offer.discount_percent|percent }} off, {{ loyalty.credit|money }}",
]


@pytest.fixture(scope="module")
def sms_templates() -> list[object]:
    return [
        compile_template(TemplateSpec.model_validate(
            {"channel": "sms", "locale": locale, "parts": {"text": source}}
        ))
        for source in SMS_SOURCES
        for locale in ("es-ES", "pt-BR", "fr-FR", "en-US")
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(context=contexts)
def test_no_rendering_exceeds_the_measured_worst_case(
    sms_templates: list[object], context: PersonalisationContext
) -> None:
    for template in sms_templates:
        message = render(template, context)  # type: ignore[arg-type]
        assert isinstance(message, RenderedText)
        worst = template.worst.sms  # type: ignore[attr-defined]
        assert message.count.segments <= worst.segments
        if message.count.encoding == worst.encoding:
            assert message.count.units <= worst.units


PUSH = TemplateSpec.model_validate({
    "channel": "web_push", "locale": "de-DE",
    "parts": {
        "title": "{{ customer.first_name }}: {{ offer.discount_percent|percent }}",
        "body": "{% if link %}{{ product.name }} für {{ product.price|money }}{% endif %} bis "
                "{{ coupon.expires_at|datetime('long') }} \u2013 {{ store.name }}",
        "image_url": "{{ product.image_url }}",
        "deep_link": "{{ product.url }}?c={{ coupon.code }}",
    },
})


@settings(max_examples=150, deadline=None)
@given(context=contexts)
def test_no_push_exceeds_its_measured_characters_and_bytes(
    context: PersonalisationContext,
) -> None:
    template = compile_template(PUSH)
    message = render(template, context)
    assert isinstance(message, RenderedPush)
    assert len(message.title) <= template.worst.chars["title"]
    assert len(message.body) <= template.worst.chars["body"]
    document = {"title": message.title, "body": message.body,
                "url": message.deep_link, "image": message.image_url}
    size = len(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())
    assert template.worst.web_push_bytes is not None
    assert size <= template.worst.web_push_bytes


def test_measured_sms_is_exact_for_a_template_without_choices() -> None:
    """No conditions, no filters: the worst case is exactly the text with every field at
    its longest in its costliest characters."""
    template = compile_template(TemplateSpec.model_validate(
        {"channel": "sms", "locale": "en-GB", "parts": {"text": "Hi {{ customer.first_name }}"}}
    ))
    assert template.worst.sms == count_sms("Hi " + "😀" * 30)
    assert gsm7_septets("Hi " + "€" * 30) == 63
