"""The personalisation fields a template may use, as one typed model.

`PersonalisationContext` is what the scenario engine hands to `render` for one send. The
names a template may use (`FIELDS`, e.g. `customer.first_name`) are derived from this
model, so a field added here is usable in templates with nothing else to change. Every
field carries a `Leaf` saying what kind of value it is (free text, a code, a link, a
percentage, money, a moment) and how long it can be: save-time checks use the kinds to
refuse a filter applied to the wrong kind of value, and the lengths to bound an SMS or a
push at its longest.

Values are validated as strictly as templates rely on: text has no control or line-break
characters (a subject line cannot be split into headers), links are absolute http(s) URLs
in a percent-encoded ASCII subset (one GSM-7 septet per character, nothing to escape in
an attribute), moments are time-zone aware. Sections other than `customer` are optional
because not every send has a product or a coupon; a template that uses one is refused at
render time if the section is missing, naming the field.
"""

from __future__ import annotations

import functools
import re
import typing
import unicodedata
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType, SimpleNamespace
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from cloud.templates.formatting import Currency, Locale


class FieldKind(StrEnum):
    TEXT = "text"
    CODE = "code"
    URL = "url"
    PERCENT = "percent"
    MONEY = "money"
    DATETIME = "datetime"


#: Kinds that print as they are; money and moments need a formatting filter.
PRINTABLE_KINDS = frozenset({FieldKind.TEXT, FieldKind.CODE, FieldKind.URL, FieldKind.PERCENT})


@dataclass(frozen=True, slots=True)
class Leaf:
    """What a field holds: its kind and, for text kinds, its longest value in characters."""

    kind: FieldKind
    max_chars: int = 0


#: Unicode categories refused in text: controls (incl. CR, LF, tab), lone surrogates
#: (not encodable as UTF-8) and line/paragraph separators.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
#: A link: ASCII letters, digits, RFC 3986 delimiters and %XX escapes; no space, quote,
#: angle bracket, brace, backslash, caret, backtick, bar or tilde.
LINK_RE = re.compile(r"(?:[A-Za-z0-9\-._:/?#@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
COUPON_RE = r"^[A-Z0-9-]+$"
#: Moments are converted to the customer's time zone; years outside this range are not
#: marketing (and near 1 or 9999 the conversion itself would overflow).
MIN_YEAR, MAX_YEAR = 1970, 2999
#: Largest amount a money field may hold (9 digits, 2 of them decimals).
MAX_AMOUNT = Decimal("9999999.99")

# Longest values. Templates are checked against these, so they are limits on what the
# scenario engine may put in a context, chosen to keep an SMS or a push readable.
FIRST_NAME_MAX = 30
LAST_NAME_MAX = 40
STORE_NAME_MAX = 60
#: Names past this are cut on every screen that shows them; catalogue imports shorten.
PRODUCT_NAME_MAX = 60
COUPON_CODE_MAX = 20
PAGE_URL_MAX = 500
IMAGE_URL_MAX = 1000
#: `link` is the tracked short link made for every send, so it stays short enough for SMS.
LINK_MAX = 60
UNSUBSCRIBE_URL_MAX = 300


def _printable(value: str) -> str:
    for char in value:
        if unicodedata.category(char) in FORBIDDEN_CATEGORIES:
            raise ValueError(
                f"must not contain control or line-break characters (U+{ord(char):04X})"
            )
    return value


def _link(value: str) -> str:
    if not LINK_RE.fullmatch(value):
        raise ValueError(
            "a link may hold only ASCII letters, digits, -._:/?#@!$&'()*+,;= and %XX escapes"
        )
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    return value


@functools.cache
def _known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _time_zone(value: str) -> str:
    if value not in _known_time_zones():
        raise ValueError("is not a known IANA time zone")
    return value


def _plausible_year(value: datetime) -> datetime:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value


class Money(BaseModel):
    """An amount in a currency: the currency travels with the amount, so `|money` needs
    no argument and cannot be given the wrong one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Annotated[Decimal, Field(ge=0, le=MAX_AMOUNT, decimal_places=2)]
    currency: Currency


MoneyField = Annotated[Money, Leaf(FieldKind.MONEY)]
Moment = Annotated[AwareDatetime, AfterValidator(_plausible_year), Leaf(FieldKind.DATETIME)]

_Printable = AfterValidator(_printable)
_IsLink = AfterValidator(_link)
FirstName = Annotated[
    str, StringConstraints(min_length=1, max_length=FIRST_NAME_MAX), _Printable,
    Leaf(FieldKind.TEXT, FIRST_NAME_MAX),
]
LastName = Annotated[
    str, StringConstraints(min_length=1, max_length=LAST_NAME_MAX), _Printable,
    Leaf(FieldKind.TEXT, LAST_NAME_MAX),
]
StoreName = Annotated[
    str, StringConstraints(min_length=1, max_length=STORE_NAME_MAX), _Printable,
    Leaf(FieldKind.TEXT, STORE_NAME_MAX),
]
ProductName = Annotated[
    str, StringConstraints(min_length=1, max_length=PRODUCT_NAME_MAX), _Printable,
    Leaf(FieldKind.TEXT, PRODUCT_NAME_MAX),
]
PageUrl = Annotated[
    str, StringConstraints(max_length=PAGE_URL_MAX), _IsLink, Leaf(FieldKind.URL, PAGE_URL_MAX)
]
ImageUrl = Annotated[
    str, StringConstraints(max_length=IMAGE_URL_MAX), _IsLink, Leaf(FieldKind.URL, IMAGE_URL_MAX)
]
Link = Annotated[
    str, StringConstraints(max_length=LINK_MAX), _IsLink, Leaf(FieldKind.URL, LINK_MAX)
]
UnsubscribeUrl = Annotated[
    str, StringConstraints(max_length=UNSUBSCRIBE_URL_MAX), _IsLink,
    Leaf(FieldKind.URL, UNSUBSCRIBE_URL_MAX),
]
CouponCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=COUPON_CODE_MAX, pattern=COUPON_RE),
    Leaf(FieldKind.CODE, COUPON_CODE_MAX),
]
Percent = Annotated[int, Field(ge=1, le=100), Leaf(FieldKind.PERCENT, 3)]
TimeZoneName = Annotated[str, AfterValidator(_time_zone)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Customer(_Section):
    first_name: FirstName
    #: Not every customer gave one; a template that uses it is refused for those who did not.
    last_name: LastName | None = None
    #: Where moments are shown; not itself a template field.
    time_zone: TimeZoneName = "UTC"


class Store(_Section):
    name: StoreName


class Product(_Section):
    name: ProductName
    url: PageUrl
    image_url: ImageUrl
    price: MoneyField


class Offer(_Section):
    discount_percent: Percent


class Coupon(_Section):
    code: CouponCode
    expires_at: Moment


class Loyalty(_Section):
    credit: MoneyField
    balance: MoneyField


class PersonalisationContext(_Section):
    """Everything one send may personalise with."""

    customer: Customer
    store: Store | None = None
    product: Product | None = None
    offer: Offer | None = None
    coupon: Coupon | None = None
    loyalty: Loyalty | None = None
    link: Link | None = None
    unsubscribe_url: UnsubscribeUrl | None = None


def _leaf_in(annotation: Any, metadata: list[Any]) -> Leaf | None:
    for item in metadata:
        if isinstance(item, Leaf):
            return item
    if typing.get_origin(annotation) is Annotated:
        return _leaf_in(None, list(annotation.__metadata__))
    for arg in typing.get_args(annotation):
        found = _leaf_in(arg, [])
        if found is not None:
            return found
    return None


def _section_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_in(arg)
        if found is not None:
            return found
    return None


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Leaf]]:
    for name, info in model.model_fields.items():
        leaf = _leaf_in(info.annotation, list(info.metadata))
        if leaf is not None:
            yield prefix + name, leaf
            continue
        section = _section_in(info.annotation)
        if section is not None:
            yield from _leaves(section, f"{prefix}{name}.")


#: Every field a template may use, by dotted name.
FIELDS: Mapping[str, Leaf] = MappingProxyType(dict(_leaves(PersonalisationContext)))
#: Each section's fields, for messages that say what a section holds.
SECTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    section: tuple(path for path in FIELDS if path.startswith(section + "."))
    for section in dict.fromkeys(path.split(".")[0] for path in FIELDS if "." in path)
})
#: The top-level names a template may mention.
ROOTS = frozenset(path.split(".")[0] for path in FIELDS)


def _lookup(context: PersonalisationContext, path: str) -> object:
    value: object = context
    for name in path.split("."):
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def present_fields(context: PersonalisationContext) -> frozenset[str]:
    """The fields this context has a value for."""
    return frozenset(path for path in FIELDS if _lookup(context, path) is not None)


def template_variables(context: PersonalisationContext) -> dict[str, Any]:
    """What templates see: only the template fields (nothing of the pydantic models),
    with every moment already on the customer's wall clock."""
    zone = zoneinfo.ZoneInfo(context.customer.time_zone)
    sections: dict[str, dict[str, Any]] = {}
    variables: dict[str, Any] = {}
    for path, leaf in FIELDS.items():
        value = _lookup(context, path)
        if value is None:
            continue
        if leaf.kind is FieldKind.DATETIME:
            assert isinstance(value, datetime)
            value = value.astimezone(zone)
        section, _, name = path.rpartition(".")
        if section:
            sections.setdefault(section, {})[name] = value
        else:
            variables[name] = value
    variables.update({name: SimpleNamespace(**values) for name, values in sections.items()})
    return variables


#: The shop's own currency for each preview locale.
SAMPLE_CURRENCY: Mapping[Locale, Currency] = MappingProxyType({
    Locale.EN_US: Currency.USD,
    Locale.EN_GB: Currency.GBP,
    Locale.PT_BR: Currency.BRL,
})


def sample_context(locale: Locale) -> PersonalisationContext:
    """A realistic, complete context for previews: a dryer offered to a washer buyer."""
    currency = SAMPLE_CURRENCY.get(locale, Currency.EUR)
    return PersonalisationContext(
        customer=Customer(first_name="Juan", last_name="García", time_zone="Europe/Madrid"),
        store=Store(name="Vitrina Centro"),
        product=Product(
            name="Secadora EcoDry 8 kg",
            url="https://shop.example.com/secadoras/ecodry-8",
            image_url="https://cdn.shop.example.com/p/ecodry-8.jpg",
            price=Money(amount=Decimal("499.00"), currency=currency),
        ),
        offer=Offer(discount_percent=20),
        coupon=Coupon(code="SECA20-7QX", expires_at=datetime(2025, 6, 2, 21, 59, tzinfo=UTC)),
        loyalty=Loyalty(
            credit=Money(amount=Decimal("27.00"), currency=currency),
            balance=Money(amount=Decimal("27.00"), currency=currency),
        ),
        link="https://vtr.example.com/c/9fK2mQ",
        unsubscribe_url="https://shop.example.com/unsubscribe/9fK2mQ",
    )


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def merged_context(locale: Locale, partial: Mapping[str, Any] | None) -> PersonalisationContext:
    """The sample context with `partial` (nested like the model) laid over it; a section
    set to None is dropped. Raises pydantic's ValidationError for invalid values."""
    sample = sample_context(locale).model_dump()
    return PersonalisationContext.model_validate(_merge(sample, partial or {}))
