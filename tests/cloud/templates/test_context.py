from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from cloud.templates.context import (
    FIELDS,
    ROOTS,
    SECTIONS,
    Coupon,
    Customer,
    FieldKind,
    Leaf,
    Money,
    PersonalisationContext,
    merged_context,
    present_fields,
    sample_context,
    template_variables,
)
from cloud.templates.formatting import Currency, Locale


def test_fields_are_derived_from_the_model() -> None:
    assert dict(FIELDS) == {
        "customer.first_name": Leaf(FieldKind.TEXT, 30),
        "customer.last_name": Leaf(FieldKind.TEXT, 40),
        "store.name": Leaf(FieldKind.TEXT, 60),
        "product.name": Leaf(FieldKind.TEXT, 60),
        "product.url": Leaf(FieldKind.URL, 500),
        "product.image_url": Leaf(FieldKind.URL, 1000),
        "product.price": Leaf(FieldKind.MONEY),
        "offer.discount_percent": Leaf(FieldKind.PERCENT, 3),
        "coupon.code": Leaf(FieldKind.CODE, 20),
        "coupon.expires_at": Leaf(FieldKind.DATETIME),
        "loyalty.credit": Leaf(FieldKind.MONEY),
        "loyalty.balance": Leaf(FieldKind.MONEY),
        "link": Leaf(FieldKind.URL, 60),
        "unsubscribe_url": Leaf(FieldKind.URL, 300),
    }
    # The time zone steers formatting but is not something to print.
    assert "customer.time_zone" not in FIELDS
    assert SECTIONS["coupon"] == ("coupon.code", "coupon.expires_at")
    roots = {"customer", "store", "product", "offer", "coupon", "loyalty", "link"}
    assert roots | {"unsubscribe_url"} == ROOTS


def _context(**overrides: Any) -> dict[str, Any]:
    data = sample_context(Locale.ES_ES).model_dump()
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("path", "max_chars"),
    [(path, leaf.max_chars) for path, leaf in FIELDS.items() if leaf.kind is FieldKind.TEXT],
)
def test_text_lengths_are_enforced_as_declared(path: str, max_chars: int) -> None:
    section, name = path.split(".")
    data = _context()
    data[section][name] = "é" * max_chars
    PersonalisationContext.model_validate(data)
    data[section][name] = "é" * (max_chars + 1)
    with pytest.raises(ValidationError, match="at most"):
        PersonalisationContext.model_validate(data)


@pytest.mark.parametrize("bad", ["Ju\nan", "Ju\ran", "tab\there", "a\u2028b", "nul\x00"])
def test_text_refuses_controls_and_line_breaks(bad: str) -> None:
    with pytest.raises(ValidationError, match="control or line-break"):
        Customer(first_name=bad, last_name="García")


def test_text_takes_any_printable_unicode() -> None:
    name = "Zoë 👨‍👩‍👧 Ж"  # includes zero-width joiners (format characters)
    assert Customer(first_name=name, last_name="x").first_name == name


@pytest.mark.parametrize(
    "bad",
    [
        "javascript:alert(1)",
        "ftp://x.example/a",
        "https:///nohost",
        "https://x.example/a b",
        'https://x.example/"',
        "https://x.example/<script>",
        "https://x.example/{x}",
        "https://x.example/~me",
        "https://x.example/%zz",
        "https://x.example/ñ",
        "//x.example/a",
    ],
)
def test_links_refuse_anything_but_plain_http_urls(bad: str) -> None:
    with pytest.raises(ValidationError):
        PersonalisationContext.model_validate(_context(link=bad))


def test_links_accept_percent_encoded_http_urls() -> None:
    link = "http://x.example/a%7Eb?q=1&r=(2)#top"
    assert PersonalisationContext.model_validate(_context(link=link)).link == link


@pytest.mark.parametrize("code", ["seca20", "SECA 20", "SECA_20", "", "A" * 21])
def test_coupon_codes_are_upper_case_letters_digits_and_dashes(code: str) -> None:
    with pytest.raises(ValidationError):
        Coupon(code=code, expires_at=datetime(2025, 1, 1, tzinfo=UTC))


def test_moments_must_be_aware_and_plausible() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Coupon(code="A", expires_at=datetime(2025, 1, 1))
    with pytest.raises(ValidationError, match="year must be between 1970 and 2999"):
        Coupon(code="A", expires_at=datetime(9999, 12, 31, 23, tzinfo=UTC))


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", "", "Europe"])
def test_time_zones_must_be_known(zone: str) -> None:
    with pytest.raises(ValidationError, match="not a known IANA time zone"):
        Customer(first_name="a", last_name="b", time_zone=zone)


@pytest.mark.parametrize("amount", ["-1", "10000000", "1.001", "NaN", "Infinity"])
def test_money_refuses_odd_amounts(amount: str) -> None:
    with pytest.raises(ValidationError):
        Money(amount=Decimal(amount), currency=Currency.EUR)


def test_percent_is_one_to_a_hundred() -> None:
    for bad in (0, 101, -5):
        with pytest.raises(ValidationError):
            PersonalisationContext.model_validate(_context(offer={"discount_percent": bad}))


def test_only_customer_is_required() -> None:
    context = PersonalisationContext(customer=Customer(first_name="Ana", last_name="Ruiz"))
    assert present_fields(context) == {"customer.first_name", "customer.last_name"}
    assert present_fields(sample_context(Locale.EN_US)) == set(FIELDS)


def test_template_variables_hold_only_fields_and_local_moments() -> None:
    context = sample_context(Locale.ES_ES)
    variables = template_variables(context)
    assert set(variables) == ROOTS
    customer = variables["customer"]
    assert isinstance(customer, SimpleNamespace)
    assert vars(customer) == {"first_name": "Juan", "last_name": "García"}
    expires = variables["coupon"].expires_at
    # 21:59 UTC on 2 June is 23:59 in Madrid (summer time).
    assert (expires.hour, expires.minute, str(expires.tzinfo)) == (23, 59, "Europe/Madrid")
    assert variables["product"].price == Money(amount=Decimal("499.00"), currency=Currency.EUR)


def test_missing_sections_are_left_out() -> None:
    context = PersonalisationContext(customer=Customer(first_name="Ana", last_name="Ruiz"))
    assert set(template_variables(context)) == {"customer"}


def test_sample_currency_follows_the_locale() -> None:
    currencies = {
        locale: sample_context(locale).product.price.currency  # type: ignore[union-attr]
        for locale in Locale
    }
    assert currencies[Locale.EN_US] is Currency.USD
    assert currencies[Locale.EN_GB] is Currency.GBP
    assert currencies[Locale.PT_BR] is Currency.BRL
    assert currencies[Locale.DE_DE] is Currency.EUR


def test_merged_context_lays_a_partial_context_over_the_sample() -> None:
    merged = merged_context(
        Locale.ES_ES, {"customer": {"first_name": "Ana"}, "offer": {"discount_percent": 50}}
    )
    assert (merged.customer.first_name, merged.customer.last_name) == ("Ana", "García")
    assert merged.offer is not None
    assert merged.offer.discount_percent == 50
    assert merged_context(Locale.ES_ES, {"coupon": None}).coupon is None
    assert merged_context(Locale.ES_ES, None) == sample_context(Locale.ES_ES)


def test_merged_context_validates_what_it_is_given() -> None:
    with pytest.raises(ValidationError):
        merged_context(Locale.ES_ES, {"customer": {"first_name": "x" * 31}})
    with pytest.raises(ValidationError):
        merged_context(Locale.ES_ES, {"customer": {"email": "a@b.example"}})
