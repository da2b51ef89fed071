"""Offers: the shop's discounts, the complementary categories cross-selling follows, and
the single-use coupon codes issued to customers and redeemed through order webhooks.

- `models`: the `offer`, `complement_rule` and `coupon` tables and the API's bodies;
- `codes`: making and recognising coupon codes;
- `crud`: choosing a cross-sell offer, issuing coupons (counted atomically against an
  offer's stock and budget) and redeeming them once;
- `api`: the tenant admin's routes for offers and complement rules, and a customer's coupons.
"""
