"""Hypothesis strategies for personalisation contexts: any value the model accepts,
including the longest and the most awkward (emoji, GSM-7 extension characters)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from cloud.templates.context import (
    FIELDS,
    MAX_AMOUNT,
    Coupon,
    Customer,
    Loyalty,
    Money,
    Offer,
    PersonalisationContext,
    Product,
    Store,
)
from cloud.templates.formatting import Currency

_PRINTABLE = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))
#: Characters that stress each encoding: extension table, non-GSM, astral, plain.
_AWKWARD = st.sampled_from(["€", "{", "~", "ó", "ç", "😀", "a", "Ñ", "\u00a0", '"', "\\"])
_URL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:/?#@!$&'()*+,;="


def text(path: str) -> st.SearchStrategy[str]:
    size = FIELDS[path].max_chars
    return st.text(_PRINTABLE | _AWKWARD, min_size=1, max_size=size) | st.text(
        _AWKWARD, min_size=size, max_size=size
    )


def link(path: str) -> st.SearchStrategy[str]:
    prefix = "https://x.example/"
    rest = FIELDS[path].max_chars - len(prefix)
    return st.text(st.sampled_from(_URL_CHARS), max_size=rest).map(lambda tail: prefix + tail)


money = st.builds(
    Money,
    amount=st.integers(0, int(MAX_AMOUNT * 100)).map(lambda cents: Decimal(cents) / 100),
    currency=st.sampled_from(Currency),
)
moments = st.integers(0, int((datetime(2999, 12, 30) - datetime(1970, 1, 2)).total_seconds())).map(
    lambda seconds: datetime(1970, 1, 2, tzinfo=UTC) + timedelta(seconds=seconds)
)

contexts = st.builds(
    PersonalisationContext,
    customer=st.builds(
        Customer,
        first_name=text("customer.first_name"),
        last_name=text("customer.last_name"),
        time_zone=st.sampled_from(
            ["UTC", "Europe/Madrid", "America/Sao_Paulo", "Asia/Kolkata", "Pacific/Kiritimati"]
        ),
    ),
    store=st.builds(Store, name=text("store.name")),
    product=st.builds(
        Product,
        name=text("product.name"),
        url=link("product.url"),
        image_url=link("product.image_url"),
        price=money,
    ),
    offer=st.builds(Offer, discount_percent=st.integers(1, 100)),
    coupon=st.builds(
        Coupon,
        code=st.text(st.sampled_from("ABCXYZ0189-"), min_size=1, max_size=20),
        expires_at=moments,
    ),
    loyalty=st.builds(Loyalty, credit=money, balance=money),
    link=link("link"),
    unsubscribe_url=link("unsubscribe_url"),
)
