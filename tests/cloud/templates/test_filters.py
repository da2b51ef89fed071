from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cloud.templates.context import FieldKind, Money
from cloud.templates.filters import FILTERS, apply_filter, filter_outputs, jinja_filters
from cloud.templates.formatting import NBSP, Currency, Locale

PRICE = Money(amount=Decimal("1234.5"), currency=Currency.EUR)
MOMENT = datetime(2025, 6, 2, 23, 59, tzinfo=UTC)


def test_the_fixed_set() -> None:
    assert {name: f.accepts for name, f in FILTERS.items()} == {
        "money": FieldKind.MONEY,
        "percent": FieldKind.PERCENT,
        "date": FieldKind.DATETIME,
        "datetime": FieldKind.DATETIME,
    }
    assert FILTERS["date"].styles == ("short", "medium", "long")
    assert FILTERS["money"].styles == ()


def test_apply() -> None:
    es = Locale.ES_ES
    assert apply_filter("money", PRICE, None, es, plain_spaces=False) == f"1.234,50{NBSP}€"
    assert apply_filter("money", PRICE, None, es, plain_spaces=True) == "1.234,50 €"
    assert apply_filter("percent", 15, None, es, plain_spaces=True) == "15 %"
    assert apply_filter("date", MOMENT, "long", es, plain_spaces=False) == "2 de junio de 2025"
    assert apply_filter("datetime", MOMENT, "short", es, plain_spaces=False) == "2/6/25, 23:59"


@pytest.mark.parametrize(
    ("name", "value", "style", "message"),
    [
        ("money", 12, None, "money needs an amount, got int"),
        ("percent", "15", None, "percent needs a whole number, got str"),
        ("percent", True, None, "percent needs a whole number, got bool"),
        ("date", "2025-06-02", "short", "date needs a moment, got str"),
        ("date", MOMENT, "full", "style must be one of short, medium, long, got 'full'"),
        ("date", MOMENT, 3, "style must be one of short, medium, long, got 3"),
        ("upper", "x", None, "unknown filter 'upper'"),
    ],
)
def test_apply_refuses_wrong_values(name: str, value: object, style: object, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        apply_filter(name, value, style, Locale.EN_US, plain_spaces=False)


def test_outputs_cover_the_widest_values() -> None:
    money = filter_outputs("money", None, Locale.FR_FR, plain_spaces=True)
    assert money == ("9 999 999,99 €", "9 999 999,99 $US", "9 999 999,99 £GB", "9 999 999,99 R$")
    percents = filter_outputs("percent", None, Locale.EN_US, plain_spaces=False)
    assert len(percents) == 100
    assert max(percents, key=len) == "100%"
    months = filter_outputs("date", "long", Locale.ES_ES, plain_spaces=False)
    assert len(months) == 12
    assert max(months, key=len) == "28 de septiembre de 2000"
    # The default style is medium.
    assert filter_outputs("date", None, Locale.EN_US, plain_spaces=False)[0] == "Jan 28, 2000"


def test_jinja_filters_default_to_medium() -> None:
    filters = jinja_filters(Locale.EN_GB, plain_spaces=False)
    assert set(filters) == set(FILTERS)
    assert filters["date"](MOMENT) == "2 Jun 2025"
    assert filters["datetime"](MOMENT, "long") == "2 June 2025, 23:59"
    assert filters["money"](PRICE) == "€1,234.50"
    assert filters["percent"](5) == "5%"
