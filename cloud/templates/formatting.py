"""Money, percentages and dates the way each supported locale writes them.

Babel is not a dependency of the orchestrator, so the few locales the shops use are
written out here from CLDR's data (symbols, separators, month names, date and time
patterns); the tests pin every locale to CLDR's own renderings. A locale outside this
table is refused when a template is saved, rather than formatted wrongly.

CLDR separates some numbers from their unit with a no-break space (U+00A0) or a narrow
no-break space (U+202F); `plain_spaces` turns those into ordinary spaces, which SMS
needs (neither is in the GSM 7-bit alphabet, so one would force the whole text to UCS-2
and more than double its cost).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from types import MappingProxyType

NBSP = "\u00a0"
NNBSP = "\u202f"


class Locale(StrEnum):
    EN_US = "en-US"
    EN_GB = "en-GB"
    ES_ES = "es-ES"
    FR_FR = "fr-FR"
    DE_DE = "de-DE"
    IT_IT = "it-IT"
    PT_BR = "pt-BR"


class Currency(StrEnum):
    """Currencies the shops sell in; all have two minor digits."""

    EUR = "EUR"
    USD = "USD"
    GBP = "GBP"
    BRL = "BRL"


class DateStyle(StrEnum):
    SHORT = "short"
    MEDIUM = "medium"
    LONG = "long"


#: Money amounts carry two decimals in every supported currency.
MINOR_UNIT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class LocaleData:
    decimal: str
    group: str
    #: "{symbol}" and "{number}" placed as the locale's currency pattern places them.
    money: str
    #: "{number}" and the percent sign.
    percent: str
    symbols: Mapping[Currency, str]
    months: tuple[str, ...]
    months_abbr: tuple[str, ...]
    #: CLDR date patterns (d, dd, M, MM, MMM, MMMM, y, yy; quoted literals).
    dates: Mapping[DateStyle, str]
    #: CLDR short time pattern (H, HH, h, mm, a).
    time: str
    #: CLDR date-time glue per date style: {1} is the date, {0} the time.
    joins: Mapping[DateStyle, str]


def _styles(short: str, medium: str, long: str) -> Mapping[DateStyle, str]:
    return MappingProxyType(
        {DateStyle.SHORT: short, DateStyle.MEDIUM: medium, DateStyle.LONG: long}
    )


def _symbols(eur: str, usd: str, gbp: str, brl: str) -> Mapping[Currency, str]:
    return MappingProxyType(
        {Currency.EUR: eur, Currency.USD: usd, Currency.GBP: gbp, Currency.BRL: brl}
    )


_EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
_EN_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

LOCALES: Mapping[Locale, LocaleData] = MappingProxyType({
    Locale.EN_US: LocaleData(
        decimal=".", group=",", money="{symbol}{number}", percent="{number}%",
        symbols=_symbols("€", "$", "£", "R$"),
        months=_EN_MONTHS, months_abbr=_EN_ABBR,
        dates=_styles("M/d/yy", "MMM d, y", "MMMM d, y"),
        time=f"h:mm{NNBSP}a",
        joins=_styles("{1}, {0}", "{1}, {0}", "{1}, {0}"),
    ),
    Locale.EN_GB: LocaleData(
        decimal=".", group=",", money="{symbol}{number}", percent="{number}%",
        symbols=_symbols("€", "US$", "£", "R$"),
        months=_EN_MONTHS, months_abbr=(*_EN_ABBR[:8], "Sept", *_EN_ABBR[9:]),
        dates=_styles("dd/MM/y", "d MMM y", "d MMMM y"),
        time="HH:mm",
        joins=_styles("{1}, {0}", "{1}, {0}", "{1}, {0}"),
    ),
    Locale.ES_ES: LocaleData(
        decimal=",", group=".", money=f"{{number}}{NBSP}{{symbol}}", percent=f"{{number}}{NBSP}%",
        symbols=_symbols("€", "US$", "GBP", "BRL"),
        months=(
            "enero", "febrero", "marzo", "abril", "mayo", "junio",
            "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre",
        ),
        months_abbr=(
            "ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic",
        ),
        dates=_styles("d/M/yy", "d MMM y", "d 'de' MMMM 'de' y"),
        time="H:mm",
        joins=_styles("{1}, {0}", "{1}, {0}", "{1}, {0}"),
    ),
    Locale.FR_FR: LocaleData(
        decimal=",", group=NNBSP, money=f"{{number}}{NBSP}{{symbol}}", percent=f"{{number}}{NBSP}%",
        symbols=_symbols("€", "$US", "£GB", "R$"),
        months=(
            "janvier", "février", "mars", "avril", "mai", "juin",
            "juillet", "août", "septembre", "octobre", "novembre", "décembre",
        ),
        months_abbr=(
            "janv.", "févr.", "mars", "avr.", "mai", "juin",
            "juil.", "août", "sept.", "oct.", "nov.", "déc.",
        ),
        dates=_styles("dd/MM/y", "d MMM y", "d MMMM y"),
        time="HH:mm",
        joins=_styles("{1} {0}", "{1}, {0}", "{1}, {0}"),
    ),
    Locale.DE_DE: LocaleData(
        decimal=",", group=".", money=f"{{number}}{NBSP}{{symbol}}", percent=f"{{number}}{NBSP}%",
        symbols=_symbols("€", "$", "£", "R$"),
        months=(
            "Januar", "Februar", "März", "April", "Mai", "Juni",
            "Juli", "August", "September", "Oktober", "November", "Dezember",
        ),
        months_abbr=(
            "Jan.", "Feb.", "März", "Apr.", "Mai", "Juni",
            "Juli", "Aug.", "Sept.", "Okt.", "Nov.", "Dez.",
        ),
        dates=_styles("dd.MM.yy", "dd.MM.y", "d. MMMM y"),
        time="HH:mm",
        joins=_styles("{1}, {0}", "{1}, {0}", "{1}, {0}"),
    ),
    Locale.IT_IT: LocaleData(
        decimal=",", group=".", money=f"{{number}}{NBSP}{{symbol}}", percent="{number}%",
        symbols=_symbols("€", "USD", "£", "BRL"),
        months=(
            "gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno",
            "luglio", "agosto", "settembre", "ottobre", "novembre", "dicembre",
        ),
        months_abbr=(
            "gen", "feb", "mar", "apr", "mag", "giu", "lug", "ago", "set", "ott", "nov", "dic",
        ),
        dates=_styles("dd/MM/yy", "d MMM y", "d MMMM y"),
        time="HH:mm",
        joins=_styles("{1}, {0}", "{1}, {0}", "{1} {0}"),
    ),
    Locale.PT_BR: LocaleData(
        decimal=",", group=".", money=f"{{symbol}}{NBSP}{{number}}", percent="{number}%",
        symbols=_symbols("€", "US$", "£", "R$"),
        months=(
            "janeiro", "fevereiro", "março", "abril", "maio", "junho",
            "julho", "agosto", "setembro", "outubro", "novembro", "dezembro",
        ),
        months_abbr=(
            "jan.", "fev.", "mar.", "abr.", "mai.", "jun.",
            "jul.", "ago.", "set.", "out.", "nov.", "dez.",
        ),
        dates=_styles("dd/MM/y", "d 'de' MMM 'de' y", "d 'de' MMMM 'de' y"),
        time="HH:mm",
        joins=_styles("{1} {0}", "{1} {0}", "{1} {0}"),
    ),
})

_PATTERN_TOKEN = re.compile(r"'[^']*'|d+|M+|y+|H+|h+|m+|a|[^'dMyHhma]+")


def plain(text: str) -> str:
    """Ordinary spaces for CLDR's no-break spaces."""
    return text.replace(NBSP, " ").replace(NNBSP, " ")


def _group(digits: str, separator: str) -> str:
    head = len(digits) % 3 or 3
    groups = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return separator.join(groups)


def format_number(value: Decimal | int, locale: Locale, *, decimals: int = 0) -> str:
    """A non-negative number with the locale's grouping and decimal separator."""
    data = LOCALES[locale]
    if decimals:
        quantum = Decimal(1).scaleb(-decimals)
        text = f"{Decimal(value).quantize(quantum, rounding=ROUND_HALF_EVEN):f}"
        whole, _, fraction = text.partition(".")
        return _group(whole, data.group) + data.decimal + fraction
    return _group(str(value), data.group)


def format_money(amount: Decimal, currency: Currency, locale: Locale) -> str:
    """An amount in a currency, e.g. 1.234,50 € in es-ES and €1,234.50 in en-US."""
    data = LOCALES[locale]
    number = format_number(amount, locale, decimals=2)
    return data.money.format(symbol=data.symbols[currency], number=number)


def format_percent(value: int, locale: Locale) -> str:
    """A whole percentage, e.g. 15 % in es-ES and 15% in en-US."""
    return LOCALES[locale].percent.format(number=format_number(value, locale))


def _render_pattern(pattern: str, moment: datetime, data: LocaleData) -> str:
    out: list[str] = []
    for token in _PATTERN_TOKEN.findall(pattern):
        letter, width = token[0], len(token)
        if letter == "'":
            out.append(token[1:-1])
        elif letter == "d":
            out.append(f"{moment.day:0{width}d}")
        elif letter == "M":
            names = {3: data.months_abbr, 4: data.months}.get(width)
            out.append(names[moment.month - 1] if names else f"{moment.month:0{width}d}")
        elif letter == "y":
            out.append(f"{moment.year % 100:02d}" if width == 2 else str(moment.year))
        elif letter == "H":
            out.append(f"{moment.hour:0{width}d}")
        elif letter == "h":
            out.append(str(moment.hour % 12 or 12))
        elif letter == "m":
            out.append(f"{moment.minute:02d}")
        elif letter == "a":
            out.append("AM" if moment.hour < 12 else "PM")
        else:
            out.append(token)
    return "".join(out)


def format_date(moment: datetime, style: DateStyle, locale: Locale) -> str:
    """The date of `moment` as its own wall clock shows it (convert it first)."""
    data = LOCALES[locale]
    return _render_pattern(data.dates[style], moment, data)


def format_datetime(moment: datetime, style: DateStyle, locale: Locale) -> str:
    """Date in the given style and short time, joined as the locale joins them."""
    data = LOCALES[locale]
    return data.joins[style].replace("{1}", format_date(moment, style, locale)).replace(
        "{0}", _render_pattern(data.time, moment, data)
    )
