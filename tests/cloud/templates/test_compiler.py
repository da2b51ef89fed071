from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cloud.templates import (
    PersonalisationContext,
    TemplateError,
    TemplateLimits,
    TemplateSpec,
    compile_template,
    render,
    sample_context,
)
from cloud.templates.compiler import (
    WEB_PUSH_PLAINTEXT_BYTES,
    WEB_PUSH_TEMPLATE_BYTES,
    Template,
    render_parts,
)
from cloud.templates.context import FIELDS, Customer
from cloud.templates.formatting import Locale
from cloud.templates.sandbox import Flavour
from cloud.templates.sms import SmsEncoding
from tests.cloud.templates.strategies import contexts

INTERNALS = "is not allowed: names starting with '_' are Python internals"
UNSUBSCRIBE_HTML = '<p><a href="{{ unsubscribe_url }}">Darse de baja</a></p>'
UNSUBSCRIBE_TEXT = "Darse de baja: {{ unsubscribe_url }}"


def _compile(channel: str, parts: dict[str, str], locale: str = "es-ES",
             limits: TemplateLimits | None = None) -> Template:
    spec = TemplateSpec.model_validate({"channel": channel, "locale": locale, "parts": parts})
    return compile_template(spec, limits)


def _refusal(channel: str, parts: dict[str, str], **options: Any) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        _compile(channel, parts, **options)
    return caught.value


def test_push_template() -> None:
    template = _compile("push", {
        "title": "¡{{ customer.first_name }}, tu secadora te espera!",
        "body": "{{ offer.discount_percent|percent }} en {{ product.name }} hasta el "
                "{{ coupon.expires_at|date }}. Código {{ coupon.code }}",
        "image_url": "{{ product.image_url }}",
        "deep_link": "vitrina://product?u={{ product.url }}",
    })
    assert template.channel == "push"
    assert template.locale is Locale.ES_ES
    assert template.fields == {
        "customer.first_name", "offer.discount_percent", "product.name", "coupon.expires_at",
        "coupon.code", "product.image_url", "product.url",
    }
    assert template.parts["title"].fields == {"customer.first_name"}
    assert template.parts["body"].flavour is Flavour.TEXT
    # 1 + 30 + 24; body: 5 + 4 + 60 + 10 + 11 ("28 sept 2000") + 9 + 20.
    assert dict(template.worst.chars) == {"title": 55, "body": 120}


def test_email_template() -> None:
    template = _compile("email", {
        "subject": "{{ customer.first_name }}, tu crédito de {{ loyalty.credit|money }}",
        "html": "<p>Hola {{ customer.first_name }}</p>" + UNSUBSCRIBE_HTML,
        "text": "Hola {{ customer.first_name }}\n" + UNSUBSCRIBE_TEXT,
    })
    assert template.parts["html"].flavour is Flavour.HTML
    assert template.parts["subject"].flavour is Flavour.TEXT
    assert template.fields == {"customer.first_name", "loyalty.credit", "unsubscribe_url"}


def test_sms_template_is_measured() -> None:
    template = _compile("sms", {"text": "Hola {{ customer.first_name }}: {{ link }}"})
    assert template.parts["text"].flavour is Flavour.SMS
    assert template.worst.sms is not None
    # "Hola " + 30 emoji (60 units) + ": " + 60 = 127 code units: two segments.
    assert (template.worst.sms.encoding, template.worst.sms.units, template.worst.sms.segments) == (
        SmsEncoding.UCS2, 127, 2
    )


def test_syntax_errors_name_part_and_line() -> None:
    error = _refusal("email", {
        "subject": "s", "html": "<p>\n{% if link %}\n</p>" + UNSUBSCRIBE_HTML,
        "text": UNSUBSCRIBE_TEXT,
    })
    assert str(error) == (
        "html: line 3: Unexpected end of template. Jinja was looking for the following tags: "
        "'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'."
    )
    assert (error.part, error.line) == ("html", 3)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ ''.__class__ }}", "body: line 1: '__class__' " + INTERNALS),
        ("{{ cycler.__init__.__globals__ }}", "body: line 1: '__globals__' " + INTERNALS),
        ("{{ lipsum }}", "body: line 1: unknown field 'lipsum'; fields are: " + ", ".join(FIELDS)),
        ("{% include 'other' %}",
         "body: line 1: {% include %} is not allowed: a template cannot load another"),
    ],
)
def test_sandbox_escapes_are_refused_at_save_time(source: str, message: str) -> None:
    assert str(_refusal("push", {"title": "t", "body": source})) == message


def test_email_needs_its_unsubscribe_link_in_both_parts() -> None:
    error = _refusal("email", {"subject": "s", "html": "<p>hi</p>", "text": UNSUBSCRIBE_TEXT})
    assert str(error) == (
        "html: every email must carry its unsubscribe link: add {{ unsubscribe_url }}"
    )
    assert error.field == "unsubscribe_url"
    error = _refusal("email", {"subject": "s", "html": UNSUBSCRIBE_HTML, "text": "hi"})
    assert str(error) == (
        "text: every email must carry its unsubscribe link: add {{ unsubscribe_url }}"
    )
    error = _refusal("email", {
        "subject": "s", "html": UNSUBSCRIBE_HTML,
        "text": "{% if link %}" + UNSUBSCRIBE_TEXT + "{% endif %}",
    })
    assert str(error) == (
        "text: {{ unsubscribe_url }} must be printed outside every {% if %}: "
        "every email carries its unsubscribe link"
    )


def test_subject_and_title_are_one_line() -> None:
    error = _refusal("email", {
        "subject": "Hola\n{{ customer.first_name }}", "html": UNSUBSCRIBE_HTML,
        "text": UNSUBSCRIBE_TEXT,
    })
    assert str(error) == "subject: line 1: the subject must be one line"
    assert str(_refusal("push", {"title": "a\nb", "body": "b"})) == (
        "title: line 1: the title must be one line"
    )


LONG_SMS = (
    "Hola {{ customer.first_name }} {{ customer.last_name }}, {{ product.name }} con un "
    "{{ offer.discount_percent|percent }} de descuento en {{ store.name }}: {{ link }}"
)


def test_sms_over_the_segment_limit_at_its_longest() -> None:
    error = _refusal("sms", {"text": LONG_SMS})
    assert str(error) == (
        "text: up to 8 SMS segments at its longest (UCS-2, 480 code units), over the limit "
        "of 4 (fields at their longest: customer.first_name 30, customer.last_name 40, "
        "link 60, product.name 60, store.name 60 characters)"
    )
    # The same text with the sample values is two segments: the limit is about the
    # longest values, not the ones a preview happens to show.
    assert len(LONG_SMS) < 200


def test_sms_segment_limit_is_the_tenants() -> None:
    assert _compile("sms", {"text": LONG_SMS}, limits=TemplateLimits(sms_max_segments=8))
    assert str(_refusal("sms", {"text": "x" * 161}, limits=TemplateLimits(sms_max_segments=1))) == (
        "text: up to 2 SMS segments at its longest (GSM-7, 161 septets), over the limit of 1"
    )
    assert _compile("sms", {"text": "x" * 160}, limits=TemplateLimits(sms_max_segments=1))


def test_sms_extension_characters_count_twice() -> None:
    limits = TemplateLimits(sms_max_segments=1)
    assert _compile("sms", {"text": "€" * 80}, limits=limits)
    assert "(GSM-7, 162 septets)" in str(_refusal("sms", {"text": "€" * 81}, limits=limits))
    # Braces are in the extension table too ({% raw %} prints them literally).
    assert "(GSM-7, 162 septets)" in str(
        _refusal("sms", {"text": "{% raw %}" + "{" * 81 + "{% endraw %}"}, limits=limits)
    )


def test_push_title_and_body_limits() -> None:
    error = _refusal("push", {"title": "{{ customer.first_name }} y {{ store.name }}", "body": "b"})
    assert str(error) == (
        "title: up to 93 characters at its longest, over the limit of 65 (fields at their "
        "longest: customer.first_name 30, store.name 60 characters)"
    )
    error = _refusal("web_push", {"title": "t", "body": "{{ product.name }} " * 5})
    assert str(error) == (
        "body: up to 305 characters at its longest, over the limit of 240 (fields at their "
        "longest: product.name 60 characters)"
    )
    assert _compile(
        "push", {"title": "t", "body": "{{ product.name }} " * 5},
        limits=TemplateLimits(push_body_chars=305),
    )


def test_web_push_payload_must_fit_the_encrypted_record() -> None:
    assert WEB_PUSH_PLAINTEXT_BYTES == 3993
    parts = {
        "title": "t", "body": "b",
        "image_url": "https://cdn.example.com/" + "a" * 2000,
        "deep_link": "https://shop.example.com/" + "b" * 1990,
    }
    error = _refusal("web_push", parts)
    assert str(error) == (
        "payload: the web push payload could reach 4083 bytes; 2969 are available (a push "
        "message carries 3993 bytes before encryption, 1024 of them kept for the sender)"
    )
    parts["deep_link"] = "{{ product.url }}"
    template = _compile("web_push", parts)
    assert template.worst.web_push_bytes is not None
    assert template.worst.web_push_bytes <= WEB_PUSH_TEMPLATE_BYTES


def test_web_push_limit_matches_the_sender() -> None:
    from cloud.channels.web_push_service import MAX_PLAINTEXT_BYTES

    assert WEB_PUSH_PLAINTEXT_BYTES == MAX_PLAINTEXT_BYTES


def test_link_parts_must_render_to_links() -> None:
    assert str(_refusal("push", {"title": "t", "body": "b", "image_url": "ftp://x.example/a"})) == (
        "image_url: must be an http or https URL, got 'ftp://x.example/a'"
    )
    error = _refusal("push", {"title": "t", "body": "b", "deep_link": "p/{{ coupon.code }}"})
    assert str(error) == "deep_link: must be a URL with a scheme, got 'p/SECA20-7QX'"


def test_missing_fields_are_named_at_render_time() -> None:
    template = _compile("sms", {"text": "{{ customer.first_name }}: {{ coupon.code }} {{ link }}"})
    bare = PersonalisationContext(customer=Customer(first_name="Ana", last_name="Ruiz"))
    with pytest.raises(TemplateError) as caught:
        render_parts(template, bare)
    assert str(caught.value) == (
        "text: missing field 'coupon.code'; the template needs coupon.code, link"
    )
    assert caught.value.field == "coupon.code"


def test_compiling_a_large_email_is_quick() -> None:
    paragraph = (
        "<p>Hola {{ customer.first_name }}, {% if offer.discount_percent > 10 %}"
        "{{ offer.discount_percent|percent }}{% else %}{{ product.price|money }}{% endif %}"
        " en {{ product.name }}.</p>\n"
    )
    html = paragraph * 300 + UNSUBSCRIBE_HTML  # 54 KB, 1,200 expressions
    started = time.perf_counter()
    template = _compile("email", {"subject": "s", "html": html, "text": UNSUBSCRIBE_TEXT})
    elapsed = time.perf_counter() - started
    assert len(template.spec.parts.sources()["html"]) > 54_000
    # About 1 s here on one core; Jinja's own parsing and code generation are most of it.
    assert elapsed < 5


# Fuzzing: parsing and save-time checks only ever refuse with the two errors an API maps
# to a 422, and whatever they accept renders for every valid context.

_FRAGMENTS = st.sampled_from([
    "{{", "}}", "{%", "%}", "{#", "#}", " ", "\n", "if", "elif", "else", "endif", "for", "in",
    "endfor", "include", "import", "extends", "set", "=", "raw", "endraw", "autoescape", "false",
    "endautoescape", "macro", "'x'", '"y"', "1", "1.5", "9" * 30, "(", ")", "[", "]", ",", ".",
    "|", "~", "+", "*", "**", "-", "or", "and", "not", "==", ">", "is", "defined", "true", "none",
    "customer", "customer.first_name", "first_name", "store.name", "product.price",
    "product.url", "coupon.expires_at", "coupon.code", "offer.discount_percent", "link",
    "unsubscribe_url", "money", "percent", "date", "datetime", "'short'", "style=", "__class__",
    "__init__", "cycler", "range", "lipsum", "self", "loop", "caller", "super", "safe", "upper",
    "€", "😀", "ó", "\\", "'", '"', "%", "{", "}",
])
_sources = st.lists(_FRAGMENTS | st.text(max_size=5), min_size=1, max_size=40).map("".join)

_EXPRESSIONS = st.sampled_from([
    "customer.first_name", "store.name", "coupon.code", "link", "offer.discount_percent",
    "product.price|money", "loyalty.credit|money", "coupon.expires_at|date('short')",
    "coupon.expires_at|datetime", "offer.discount_percent|percent", "'txt'", "42",
    "customer.last_name if offer.discount_percent > 20 else store.name",
    "customer.first_name ~ '!'", "store.name or 'x'",
])
_CONDITIONS = st.sampled_from([
    "link", "offer.discount_percent > 30", "'a' in customer.first_name", "not coupon.code",
    "store.name == 'x' and product.url", "customer.first_name != customer.last_name",
])


@st.composite
def _well_formed(draw: st.DrawFn, depth: int = 0) -> str:
    pieces = draw(st.lists(
        st.one_of(
            st.text(st.sampled_from("Hola ó€{ }~\n😀,."), max_size=12),
            _EXPRESSIONS.map(lambda e: "{{ " + e + " }}"),
            *([] if depth > 2 else [st.tuples(_CONDITIONS, _well_formed(depth + 1)).map(
                lambda pair: "{% if " + pair[0] + " %}" + pair[1] + "{% endif %}"
            )]),
        ),
        min_size=1, max_size=6,
    ))
    return "".join(pieces)


def _spec(channel: str, locale: str, source: str) -> dict[str, Any]:
    parts: dict[str, Any]
    if channel == "email":
        parts = {"subject": source.replace("\n", " "), "html": source + UNSUBSCRIBE_HTML,
                 "text": source + UNSUBSCRIBE_TEXT}
    elif channel == "sms":
        parts = {"text": source}
    else:
        parts = {"title": source, "body": source}
    return {"channel": channel, "locale": locale, "parts": parts}


_channels = st.sampled_from(["push", "web_push", "email", "sms"])
_locales = st.sampled_from([locale.value for locale in Locale])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channel=_channels, locale=_locales, source=st.one_of(_sources, _well_formed()))
def test_save_time_raises_only_template_or_validation_errors(
    channel: str, locale: str, source: str
) -> None:
    try:
        template = compile_template(TemplateSpec.model_validate(_spec(channel, locale, source)))
    except (TemplateError, ValidationError):
        return
    render(template, sample_context(template.locale))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channel=_channels, locale=_locales, source=_well_formed(),
    limit=st.integers(1, 12), context=contexts,
)
def test_accepted_templates_render_for_every_complete_context(
    channel: str, locale: str, source: str, limit: int, context: PersonalisationContext
) -> None:
    try:
        spec = TemplateSpec.model_validate(_spec(channel, locale, source))
        template = compile_template(spec, TemplateLimits(sms_max_segments=limit))
    except (TemplateError, ValidationError):
        return
    message = render(template, context)
    if channel == "sms":
        assert template.worst.sms is not None
        assert message.count.segments <= template.worst.sms.segments  # type: ignore[union-attr]
