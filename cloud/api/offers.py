"""Routes for the offer catalogue, the complement rules and coupons.

Offers and rules are written by those who may write offers (`MayWriteOffers`: marketers,
owners, admin keys) and read by every member; a customer's coupons are also readable
with an app key, so the shop's app can show them, while an offer's coupons (whose they
are) are for those who may read customers. An offer is never deleted: DELETE
deactivates it (no new coupons, never chosen again) while the coupons already issued
stay redeemable and auditable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response, status

from cloud.api.access import MayReadConfig, MayReadCoupons, MayReadCustomers, MayWriteOffers
from cloud.api.audit import Audit
from cloud.api.customers import CustomerDep
from cloud.api.deps import MAX_PAGE, NowDep, SessionDep
from cloud.api.errors import refusals
from cloud.bounds import Offset
from cloud.customers.crud import public_ids
from cloud.offers import crud
from cloud.offers.models import (
    MAX_COMPLEMENT_RULES,
    OFFER_KEY_PATTERN,
    ComplementRule,
    ComplementRuleCreate,
    ComplementRulePublic,
    CouponPublic,
    CouponStatus,
    Offer,
    OfferCouponPublic,
    OfferCoupons,
    OfferCreate,
    OfferPublic,
)
from cloud.scenarios.segments import build_book, offer_segment_problem
from cloud.segments.crud import list_segments

router = APIRouter(tags=["offers"])

KeyPath = Annotated[str, Path(pattern=OFFER_KEY_PATTERN, description="the offer's key")]


def _public(offer: Offer | None) -> OfferPublic | None:
    return OfferPublic.model_validate(offer) if offer is not None else None


def _rules(rules: Sequence[ComplementRule]) -> list[ComplementRulePublic]:
    return [ComplementRulePublic.model_validate(rule) for rule in rules]


def _not_found(tenant: str, key: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"offer {key!r} of tenant {tenant!r} not found")


@router.put("/offers/{key}", response_model=OfferPublic, responses={
    201: {"model": OfferPublic, "description": "a new offer"}, **refusals(409)})
def put_offer(
    caller: MayWriteOffers, response: Response, session: SessionDep, now: NowDep,
    audit: Audit, tenant: str, key: KeyPath, data: OfferCreate,
) -> Offer:
    """Create or replace an offer (201 when new). Counters are kept; once coupons exist
    its discount, sku, category, price and currency are fixed (409). A `segment` must
    exist (422 with the nearest one otherwise)."""
    segments = build_book(list_segments(session, tenant=tenant, lock="share"))
    refused = offer_segment_problem(data.segment, segments)
    if refused is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
            {"loc": ["body", "segment"], "msg": refused, "type": "value_error"}])
    before = _public(crud.get_offer(session, tenant=tenant, key=key))
    try:
        offer, created = crud.upsert_offer(
            session, tenant=tenant, key=key, data=data, now=now
        )
    except crud.OfferTermsFixedError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except crud.OfferError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    audit.record("offer.put", f"offer:{key}", before=before, after=_public(offer))
    session.commit()
    if created:
        response.status_code = status.HTTP_201_CREATED
    return offer


@router.get("/offers", response_model=list[OfferPublic])
def list_offers(
    caller: MayReadConfig, session: SessionDep, tenant: str,
    active_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[Offset, Query()] = 0,
) -> Sequence[Offer]:
    """The tenant's offers by key, deactivated ones too unless `active_only`."""
    return crud.list_offers(
        session, tenant=tenant, limit=limit, offset=offset, active_only=active_only
    )


@router.get("/offers/{key}", response_model=OfferPublic)
def get_offer(
    caller: MayReadConfig, session: SessionDep, tenant: str, key: KeyPath
) -> Offer:
    offer = crud.get_offer(session, tenant=tenant, key=key)
    if offer is None:
        raise _not_found(tenant, key)
    return offer


@router.get("/offers/{key}/coupons", response_model=OfferCoupons)
def get_offer_coupons(
    caller: MayReadCustomers, session: SessionDep, now: NowDep, tenant: str, key: KeyPath,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> OfferCoupons:
    """How the offer's coupons stand (active, redeemed, expired) and the newest ones."""
    offer = crud.get_offer(session, tenant=tenant, key=key)
    if offer is None:
        raise _not_found(tenant, key)
    counts, newest = crud.offer_coupons(session, offer=offer, now=now, limit=limit)
    public = public_ids(session, (coupon.customer_id for coupon in newest))
    return OfferCoupons(
        issued=sum(counts.values()), active=counts[CouponStatus.ACTIVE],
        redeemed=counts[CouponStatus.REDEEMED], expired=counts[CouponStatus.EXPIRED],
        newest=[OfferCouponPublic.model_validate(
            coupon, update={"status": crud.coupon_status(coupon, now=now),
                            "customer_id": public[coupon.customer_id]})
            for coupon in newest],
    )


@router.delete("/offers/{key}", response_model=OfferPublic)
def delete_offer(
    caller: MayWriteOffers, session: SessionDep, now: NowDep, audit: Audit, tenant: str,
    key: KeyPath,
) -> Offer:
    """Deactivate the offer; issued coupons stay valid. PUT it again to reactivate."""
    before = _public(crud.get_offer(session, tenant=tenant, key=key))
    offer = crud.deactivate_offer(session, tenant=tenant, key=key, now=now)
    if offer is None:
        raise _not_found(tenant, key)
    audit.record("offer.deactivate", f"offer:{key}", before=before, after=_public(offer))
    session.commit()
    return offer


@router.put("/complements", response_model=list[ComplementRulePublic])
def put_complements(
    caller: MayWriteOffers, session: SessionDep, audit: Audit, tenant: str,
    rules: Annotated[list[ComplementRuleCreate], Body(max_length=MAX_COMPLEMENT_RULES)],
) -> list[ComplementRule]:
    """Replace the tenant's complement rules (washers -> dryers) with this list."""
    before = _rules(crud.list_complements(session, tenant=tenant))
    try:
        saved = crud.replace_complements(session, tenant=tenant, rules=rules)
    except crud.OfferError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    audit.record("complements.put", "complements", before=before, after=_rules(saved))
    session.commit()
    return saved


@router.get("/complements", response_model=list[ComplementRulePublic])
def get_complements(
    caller: MayReadConfig, session: SessionDep, tenant: str
) -> Sequence[ComplementRule]:
    return crud.list_complements(session, tenant=tenant)


@router.get("/customers/{customer_id}/coupons", response_model=list[CouponPublic])
def customer_coupons(
    caller: MayReadCoupons, session: SessionDep, now: NowDep, customer: CustomerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[CouponPublic]:
    """The customer's coupons, newest first, with their offer and state at this moment."""
    assert customer.id is not None
    return [
        CouponPublic.model_validate(coupon, update={
            "offer_key": offer.key, "discount_percent": offer.discount_percent,
            "sku": offer.sku, "category": offer.category,
            "status": crud.coupon_status(coupon, now=now),
        })
        for coupon, offer in crud.customer_coupons(session, customer_id=customer.id, limit=limit)
    ]
