from typing import Any

import pytest
from pydantic import ValidationError

from cloud.commerce.models import OrderCreated
from cloud.offers.models import ComplementRuleCreate, OfferCreate
from tests.cloud.offers.factories import DRYER, offer_body, order_event


def test_a_complete_offer_is_accepted_with_either_target() -> None:
    by_category = OfferCreate.model_validate(offer_body())
    assert (by_category.sku, by_category.category) == (None, "dryers")
    by_product = OfferCreate.model_validate(offer_body(category=None, sku="DR-9KG"))
    assert by_product.sku == "DR-9KG"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"discount_percent": 0}, "discount_percent"),
        ({"discount_percent": 101}, "discount_percent"),
        ({"category": None}, "a sku, a category or both"),
        ({"sku": "has space"}, "sku"),
        ({"price": "-0.01"}, "price"),
        ({"price": "1.001"}, "price"),
        ({"price": "10000000.00"}, "price"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"product_url": "javascript:alert(1)"}, "product_url"),
        ({"product_url": "/dryers"}, "product_url"),
        ({"image_url": "ftp://cdn.example/x.jpg"}, "image_url"),
        ({"product_name": "Dryer\r\nBcc: x"}, "product_name"),
        ({"product_name": "x" * 61}, "product_name"),
        ({"name": " "}, "name"),
        ({"valid_from": "2026-11-01T00:00:00"}, "valid_from"),
        ({"valid_until": "2026-10-01T00:00:00Z"}, "valid_until must be after valid_from"),
        ({"coupon_limit": -1}, "coupon_limit"),
        ({"budget_limit": "-5"}, "budget_limit"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_offers_are_refused_naming_the_problem(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        OfferCreate.model_validate(offer_body(**changes))
    assert field in str(raised.value)


def test_a_complement_rule_links_two_different_categories() -> None:
    rule = ComplementRuleCreate(from_category="washers", to_category="dryers")
    assert rule.priority == 100
    with pytest.raises(ValidationError, match="cannot complement itself"):
        ComplementRuleCreate(from_category="washers", to_category="washers")
    with pytest.raises(ValidationError, match="priority"):
        ComplementRuleCreate.model_validate(
            {"from_category": "a", "to_category": "b", "priority": -1}
        )


def test_orders_carry_at_most_twenty_coupon_codes_of_a_code_alphabet() -> None:
    event = order_event(name="juan", order_id="o-1", items=[DRYER], coupons=[" dryers20-abc "])
    assert event.coupons == ["dryers20-abc"]
    body = event.model_dump(mode="json")
    assert OrderCreated.model_validate({**body, "coupons": []}).coupons == []
    del body["coupons"]
    assert OrderCreated.model_validate(body).coupons == []  # older shops send none
    for bad in (["A B"], ["<script>"], ["X" * 65], ["C1"] * 21):
        with pytest.raises(ValidationError, match="coupons"):
            OrderCreated.model_validate({**body, "coupons": bad})
