"""The only filters templates may use: money, percent, date and datetime.

Each says which kind of field it takes (checked when a template is saved) and can list
every shape its output can take (`filter_outputs`), from which save-time checks take the
longest rendering of a template without knowing the customer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from cloud.templates.context import MAX_AMOUNT, FieldKind, Money
from cloud.templates.formatting import (
    Currency,
    DateStyle,
    Locale,
    format_date,
    format_datetime,
    format_money,
    format_percent,
    plain,
)

DEFAULT_STYLE = DateStyle.MEDIUM


@dataclass(frozen=True, slots=True)
class FilterDef:
    name: str
    #: The kind of field the filter formats.
    accepts: FieldKind
    #: Allowed values of its one optional argument, `style`; empty when it takes none.
    styles: tuple[str, ...] = ()
    description: str = ""


FILTERS: Mapping[str, FilterDef] = MappingProxyType({
    "money": FilterDef("money", FieldKind.MONEY, (), "an amount in its currency"),
    "percent": FilterDef("percent", FieldKind.PERCENT, (), "a whole percentage"),
    "date": FilterDef(
        "date", FieldKind.DATETIME, tuple(DateStyle), "the date on the customer's clock"
    ),
    "datetime": FilterDef(
        "datetime", FieldKind.DATETIME, tuple(DateStyle), "date and time on the customer's clock"
    ),
})


def _style(value: object) -> DateStyle:
    if not isinstance(value, str) or value not in DateStyle.__members__.values():
        raise ValueError(f"style must be one of {', '.join(DateStyle)}, got {value!r}")
    return DateStyle(value)


def apply_filter(
    name: str, value: object, style: object, locale: Locale, *, plain_spaces: bool
) -> str:
    """Format one value; raises TypeError/ValueError for a value of the wrong kind."""
    if name == "money":
        if not isinstance(value, Money):
            raise TypeError(f"money needs an amount, got {type(value).__name__}")
        text = format_money(value.amount, value.currency, locale)
    elif name == "percent":
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"percent needs a whole number, got {type(value).__name__}")
        text = format_percent(value, locale)
    elif name in ("date", "datetime"):
        if not isinstance(value, datetime):
            raise TypeError(f"{name} needs a moment, got {type(value).__name__}")
        formatter = format_date if name == "date" else format_datetime
        text = formatter(value, _style(style), locale)
    else:
        raise ValueError(f"unknown filter {name!r}")
    return plain(text) if plain_spaces else text


#: A day and hour with two digits in every month: the widest date of each month.
_WIDEST_MOMENTS = tuple(datetime(2000, month, 28, 23, 59) for month in range(1, 13))


def filter_outputs(
    name: str, style: str | None, locale: Locale, *, plain_spaces: bool
) -> tuple[str, ...]:
    """Every output shape of a filter, digits at their widest: the largest amount in each
    currency, every percentage, the widest date of every month (month names differ in
    length and alphabet, so each is a candidate)."""
    values: tuple[object, ...]
    if name == "money":
        values = tuple(Money(amount=MAX_AMOUNT, currency=currency) for currency in Currency)
    elif name == "percent":
        values = tuple(range(1, 101))
    else:
        values = _WIDEST_MOMENTS
    outputs = (
        apply_filter(name, value, style or DEFAULT_STYLE, locale, plain_spaces=plain_spaces)
        for value in values
    )
    return tuple(dict.fromkeys(outputs))


def jinja_filters(locale: Locale, *, plain_spaces: bool) -> dict[str, Callable[..., str]]:
    """The filter functions an environment for `locale` registers."""

    def money(value: object) -> str:
        return apply_filter("money", value, None, locale, plain_spaces=plain_spaces)

    def percent(value: object) -> str:
        return apply_filter("percent", value, None, locale, plain_spaces=plain_spaces)

    def date(value: object, style: object = DEFAULT_STYLE.value) -> str:
        return apply_filter("date", value, style, locale, plain_spaces=plain_spaces)

    def datetime_(value: object, style: object = DEFAULT_STYLE.value) -> str:
        return apply_filter("datetime", value, style, locale, plain_spaces=plain_spaces)

    return {"money": money, "percent": percent, "date": date, "datetime": datetime_}
