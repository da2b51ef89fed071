"""The template policy: what a part may contain, with the exact message for what not."""

from __future__ import annotations

import pytest

from cloud.templates.analysis import MAX_DEPTH, analyse
from cloud.templates.errors import TemplateError
from cloud.templates.formatting import Locale
from cloud.templates.sandbox import Flavour, environment

ENV = environment(Locale.ES_ES, Flavour.TEXT)
ALL_FIELDS = (
    "customer.first_name, customer.last_name, store.name, product.name, product.url, "
    "product.image_url, product.price, offer.discount_percent, coupon.code, "
    "coupon.expires_at, loyalty.credit, loyalty.balance, link, unsubscribe_url"
)


def _refusal(source: str, *, url_part: bool = False, single_line: bool = False) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        analyse("body", source, ENV, url_part=url_part, single_line=single_line)
    return caught.value


@pytest.mark.parametrize(
    ("source", "fields"),
    [
        ("Plain text, no fields.", set()),
        ("Hola {{ customer.first_name }} {{ customer.last_name }}",
         {"customer.first_name", "customer.last_name"}),
        ("{{ product.price | money }} -{{ offer.discount_percent | percent }}",
         {"product.price", "offer.discount_percent"}),
        ("{{ coupon.expires_at | date }} {{ coupon.expires_at | date('short') }}"
         " {{ coupon.expires_at | datetime(style='long') }}", {"coupon.expires_at"}),
        ("{% if offer.discount_percent >= 30 %}¡Gran oferta!{% elif offer.discount_percent > 10 %}"
         "Oferta{% else %}{{ store.name }}{% endif %}", {"offer.discount_percent", "store.name"}),
        ("{{ 'VIP' if 'García' in customer.last_name and not link == '' "
         "else customer.first_name }}",
         {"customer.last_name", "link", "customer.first_name"}),
        ("{{ customer.first_name ~ ' ' ~ (product.price | money) }}",
         {"customer.first_name", "product.price"}),
        ("{{ customer.first_name or 'amigo' }} {{ 7 }} {{ 1.5 }} {{ true }} {{ none }}",
         {"customer.first_name"}),
        ("{% raw %}{{ not a field }}{% endraw %}{# a comment #}", set()),
        ("{{ product.name > 'M' }} {{ offer.discount_percent != 'x' }}",
         {"product.name", "offer.discount_percent"}),
    ],
)
def test_accepted(source: str, fields: set[str]) -> None:
    assert analyse("body", source, ENV).fields == fields


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # Loading other templates, and other template-level features.
        ("{% include 'x.html' %}",
         "body: line 1: {% include %} is not allowed: a template cannot load another"),
        ("{% import 'macros.html' as m %}",
         "body: line 1: {% import %} is not allowed: a template cannot load another"),
        ("{% from 'm.html' import x %}",
         "body: line 1: {% from ... import %} is not allowed: a template cannot load another"),
        ("a\n\n{% extends 'base.html' %}",
         "body: line 3: {% extends %} is not allowed: a template cannot load another"),
        ("{% block b %}{% endblock %}",
         "body: line 1: {% block %} is not allowed: templates do not inherit"),
        ("{% macro m() %}{% endmacro %}", "body: line 1: {% macro %} is not allowed"),
        ("{% call x() %}{% endcall %}", "body: line 1: {% call %} is not allowed"),
        ("{% for c in customer %}{% endfor %}",
         "body: line 1: {% for %} is not allowed: no personalisation field is a list"),
        ("{% set x = 1 %}", "body: line 1: {% set %} is not allowed: print the fields themselves"),
        ("{% set x %}y{% endset %}",
         "body: line 1: {% set %} is not allowed: print the fields themselves"),
        ("{% with x = 1 %}{% endwith %}", "body: line 1: {% with %} is not allowed"),
        ("{% filter money %}x{% endfilter %}",
         "body: line 1: {% filter %} blocks are not allowed: filter a field instead"),
        ("x\n{% autoescape false %}{{ link }}{% endautoescape %}",
         "body: line 2: {% autoescape %} is not allowed: each part's escaping is fixed"),
        # Expressions outside the language.
        ("{{ customer.first_name.upper() }}", "body: line 1: calls are not allowed"),
        ("{{ customer.first_name[0] }}",
         "body: line 1: subscripts are not allowed: write customer.first_name"),
        ("{{ customer['first_name'] }}",
         "body: line 1: subscripts are not allowed: write customer.first_name"),
        ("{{ link is defined }}", "body: line 1: tests ('is ...') are not allowed"),
        ("{{ offer.discount_percent * 2 }}", "body: line 1: arithmetic is not allowed"),
        ("{{ 9 ** 9 ** 9 }}", "body: line 1: arithmetic is not allowed"),
        ("{{ -offer.discount_percent }}", "body: line 1: arithmetic is not allowed"),
        ("{{ [1, 2] }}", "body: line 1: lists are not allowed"),
        ("{{ (1, 2) }}", "body: line 1: tuples are not allowed"),
        ("{{ {'a': 1} }}", "body: line 1: dicts are not allowed"),
        ("{{ link if link }}", """body: line 1: 'a if b' needs an else: write 'a if b else ""'"""),
        # Python internals.
        ("{{ ''.__class__ }}",
         "body: line 1: '__class__' is not allowed: names starting with '_' are Python internals"),
        ("{{ cycler.__init__ }}",
         "body: line 1: '__init__' is not allowed: names starting with '_' are Python internals"),
        ("{{ customer._secret }}",
         "body: line 1: '_secret' is not allowed: names starting with '_' are Python internals"),
        ("{{ 'abc'.upper }}",
         "body: line 1: attribute 'upper' is not allowed: only personalisation fields have "
         "attributes"),
        # Filters.
        ("{{ customer.first_name | upper }}",
         "body: line 1: unknown filter 'upper'; filters are: money, percent, date, datetime"),
        ("{% if link %}{{ link | safe }}{% endif %}",
         "body: line 1: unknown filter 'safe'; filters are: money, percent, date, datetime"),
        ("{{ coupon.expires_at | date(*x) }}", "body: line 1: |date takes no * or ** arguments"),
        ("{{ customer.first_name | money }}",
         "body: line 1: |money formats a money field such as product.price; "
         "customer.first_name is text"),
        ("{{ product.price | date }}",
         "body: line 1: |date formats a datetime field such as coupon.expires_at; "
         "product.price is money"),
        ("{{ 15 | percent }}",
         "body: line 1: |percent formats a percent field such as offer.discount_percent"),
        ("{{ product.price | money('USD') }}", "body: line 1: |money takes no arguments"),
        ("{{ coupon.expires_at | date('full') }}",
         "body: line 1: |date style must be one of short, medium, long; got 'full'"),
        ("{{ coupon.expires_at | date(link) }}",
         "body: line 1: |date style must be one of short, medium, long; got an expression"),
        ("{{ coupon.expires_at | date('short', 'long') }}",
         "body: line 1: |date takes one argument, style"),
        ("{{ coupon.expires_at | date(format='short') }}",
         "body: line 1: |date takes one argument, style"),
        # Raw values that need formatting.
        ("{{ product.price }}", "body: line 1: product.price is an amount: print it with |money"),
        ("{{ coupon.expires_at }}",
         "body: line 1: coupon.expires_at is a moment: print it with |date or |datetime"),
        ("{{ 'until ' ~ coupon.expires_at }}",
         "body: line 1: coupon.expires_at is a moment: print it with |date or |datetime"),
        ("{{ loyalty.credit or '0' }}",
         "body: line 1: loyalty.credit is an amount: print it with |money"),
        # Comparisons.
        ("{% if product.price > 100 %}x{% endif %}",
         "body: line 1: cannot order money and number: compare numbers with numbers or text "
         "with text"),
        ("{% if offer.discount_percent > '10' %}x{% endif %}",
         "body: line 1: cannot order number and text: compare numbers with numbers or text "
         "with text"),
        ("{% if 1 in offer.discount_percent %}x{% endif %}",
         "body: line 1: 'in' looks for text in text"),
    ],
)
def test_refused_with_a_clear_message(source: str, message: str) -> None:
    assert str(_refusal(source)) == message


@pytest.mark.parametrize(
    ("source", "message", "field"),
    [
        ("Hola\n{{ customer.firstname }}",
         "body: line 2: unknown field 'customer.firstname' "
         "(did you mean 'customer.first_name'?)", "customer.firstname"),
        ("{{ customer.email }}", "body: line 1: unknown field 'customer.email'; customer has "
         "customer.first_name, customer.last_name", "customer.email"),
        ("{{ cycler }}", "body: line 1: unknown field 'cycler'; fields are: " + ALL_FIELDS,
         "cycler"),
        ("{{ range }}", "body: line 1: unknown field 'range'; fields are: " + ALL_FIELDS, "range"),
        ("{{ coupn.code }}",
         "body: line 1: unknown field 'coupn.code' (did you mean 'coupon.code'?)", "coupn.code"),
        ("{{ customer.first_name.upper }}",
         "body: line 1: unknown field 'customer.first_name.upper' "
         "(did you mean 'customer.first_name'?)", "customer.first_name.upper"),
        ("{{ customer.time_zone }}", "body: line 1: unknown field 'customer.time_zone'; "
         "customer has customer.first_name, customer.last_name", "customer.time_zone"),
        ("{{ product.prize | money }}",
         "body: line 1: unknown field 'product.prize' (did you mean 'product.price'?)",
         "product.prize"),
        ("{{ customer }}", "body: line 1: 'customer' is a group of fields, not a field: "
         "use customer.first_name, customer.last_name", "customer"),
        ("{% if coupon %}{{ coupon.code }}{% endif %}",
         "body: line 1: 'coupon' is a group of fields, not a field: "
         "use coupon.code, coupon.expires_at", "coupon"),
    ],
)
def test_unknown_and_missing_fields_are_named(source: str, message: str, field: str) -> None:
    error = _refusal(source)
    assert str(error) == message
    assert error.field == field


def test_syntax_errors_carry_their_line() -> None:
    error = _refusal("Hola\n{{ customer.first_name }\n")
    assert str(error) == "body: line 2: unexpected '}'"
    assert error.line == 2


def test_depth_is_bounded() -> None:
    assert analyse("body", "{{ " + "not " * (MAX_DEPTH - 3) + "link }}", ENV).fields == {"link"}
    assert str(_refusal("{{ " + "not " * MAX_DEPTH + "link }}")) == (
        "body: line 1: expressions and blocks nest more than 40 levels deep"
    )


def test_link_parts_print_only_links_codes_and_percentages() -> None:
    ok = analyse(
        "deep_link", "{{ product.url }}?c={{ coupon.code }}&d={{ offer.discount_percent }}",
        ENV, url_part=True,
    )
    assert ok.fields == {"product.url", "coupon.code", "offer.discount_percent"}
    assert str(_refusal("https://x.example/?n={{ customer.first_name }}", url_part=True)) == (
        "body: line 1: customer.first_name is free text and cannot go into a link"
    )
    assert str(_refusal("{{ link if link else product.name }}", url_part=True)) == (
        "body: line 1: product.name is free text and cannot go into a link"
    )
    assert str(_refusal("https://x.example/{{ product.price | money }}", url_part=True)) == (
        "body: line 1: |money output cannot go into a link"
    )
    assert str(_refusal("https://x.example/a b", url_part=True)) == (
        "body: line 1: a link cannot contain spaces"
    )
    assert str(_refusal("{{ link ~ ' ' }}", url_part=True)) == (
        "body: line 1: a link cannot contain spaces"
    )


def test_single_line_parts() -> None:
    assert str(_refusal("Hola\n{{ link }}", single_line=True)) == (
        "body: line 1: the body must be one line"
    )
    assert str(_refusal("{{ 'a\\nb' }}", single_line=True)) == (
        "body: line 1: the body must be one line"
    )


def test_unsubscribe_always_means_outside_every_condition() -> None:
    assert analyse("text", "Baja: {{ unsubscribe_url }}", ENV).unsubscribe_always
    assert analyse("text", '<a href="{{ unsubscribe_url }}">x</a>', ENV).unsubscribe_always
    assert not analyse(
        "text", "{% if link %}{{ unsubscribe_url }}{% endif %}", ENV
    ).unsubscribe_always
    assert not analyse("text", "{{ unsubscribe_url if link else '' }}", ENV).unsubscribe_always
    assert not analyse("text", "no link", ENV).unsubscribe_always
