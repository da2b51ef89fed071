"""Choosing the offer a step carries (see `OfferChoice`): never one for something the
customer already bought, never one that has run out or is not valid now, never one
restricted to a segment the customer is not in (as the segment stands now).

What it reads (the tenant's offers and complement rules, what the customer bought and
kept) comes from the batch's `Lookups`: a batch that sends a few hundred offers asks for
them once, not a few queries per send."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import partial

from cloud.offers.crud import offerable, pick_cross_sell
from cloud.offers.models import Offer
from cloud.scenarios.conditions import (
    NO_SEGMENTS,
    CustomerFacts,
    MessageQuery,
    SegmentBook,
    find_message,
    in_segment,
)
from cloud.scenarios.lookups import Lookups
from cloud.scenarios.models import Journey
from cloud.scenarios.spec import OfferChoice


def choose_offer(
    lookups: Lookups, *, choice: OfferChoice, journey: Journey, facts: CustomerFacts,
    now: datetime, segments: SegmentBook = NO_SEGMENTS,
) -> Offer | None:
    """`segments`: the tenant's, for offers restricted to one (without it, none of those
    is chosen)."""
    tenant, customer_id = journey.tenant, journey.customer_id
    member_of = partial(_member_of, facts=facts, now=now, segments=segments)
    bought = lookups.bought(customer_id)
    if choice.key is not None:
        offer = lookups.offer(tenant, choice.key)
        candidates = [offer] if offer is not None else []
    elif choice.cross_sell:
        offer = pick_cross_sell(
            lookups.complements(tenant), lookups.offers(tenant), bought=bought,
            from_categories=_cross_sell_sources(choice, journey, facts, now), now=now,
            member_of=member_of,
        )
        candidates = [offer] if offer is not None else []
    elif choice.trigger_category:
        candidates = _offers_on(lookups.offers(tenant), categories=trigger_categories(journey))
    else:
        earlier = find_message(
            MessageQuery(scenario=choice.message_category, opened=True, converted=False),
            facts, now,
        )
        category = earlier.product_category if earlier is not None else None
        candidates = _offers_on(lookups.offers(tenant), categories=[category] if category else [])
    generous_enough = [
        offer for offer in candidates
        if choice.min_discount is None or offer.discount_percent >= choice.min_discount
    ]
    # The most generous eligible offer (an escalation should escalate), then by key.
    eligible = offerable(generous_enough, bought=bought, now=now, member_of=member_of)
    return min(eligible, key=lambda o: (-o.discount_percent, o.key), default=None)


def _member_of(key: str, *, facts: CustomerFacts, now: datetime, segments: SegmentBook
               ) -> bool:
    return in_segment(key, facts, now, segments)


def trigger_categories(journey: Journey) -> list[str]:
    """The categories of the items of the trigger that started the journey (cart, order)."""
    found = journey.context.get("trigger", {}).get("categories", [])
    return [category for category in found if isinstance(category, str)]


def _cross_sell_sources(
    choice: OfferChoice, journey: Journey, facts: CustomerFacts, now: datetime
) -> list[str]:
    from_trigger = trigger_categories(journey)
    if from_trigger:
        return from_trigger
    since = now - choice.purchased_within
    return sorted({p.category for p in facts.purchases if p.ordered_at >= since})


def _offers_on(offers: Iterable[Offer], *, categories: Iterable[str]) -> list[Offer]:
    wanted = set(categories)
    return [offer for offer in offers if offer.category in wanted]
