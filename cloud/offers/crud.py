"""The offer catalogue, cross-selling, and coupons issued and redeemed exactly once.

Two things here must hold with several workers and replayed webhooks:

- an offer's stock and budget are never overdrawn: a coupon counts against them with one
  conditional UPDATE (`coupons_issued < coupon_limit`, `budget_used + value <=
  budget_limit`), which PostgreSQL re-evaluates on the committed row when two workers
  race, so the loser sees the offer exhausted rather than both passing a stale check;
- a coupon is redeemed once: the redemption is a conditional UPDATE (`redeemed_at IS
  NULL`), so a second order, or the same order under a new event id, changes nothing.
  Only when the shop cancels the order that spent it, and its offer says
  `reissue_on_cancel`, is it given back (`reissue_coupons`), to be redeemed once more.

Amounts in SQL are rounded to cents on both sides of each comparison: SQLite keeps
NUMERIC as binary floating point, and 0.1 + 0.2 must still fit a budget of 0.30.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from prometheus_client import Counter
from sqlalchemy import Numeric, Table, bindparam, case, delete, func, or_, update
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.sql.expression import Executable
from sqlmodel import Session, SQLModel, col, select

from cloud.bulk import one_of
from cloud.commerce.crud import ORDER_OF_LINE, still_purchased
from cloud.commerce.models import LineItem, Order, OrderLine
from cloud.customers.models import Customer
from cloud.db import dialect_insert, dialect_insert_for
from cloud.metrics import REGISTRY
from cloud.offers.codes import is_code, new_code, normalize_code
from cloud.offers.models import (
    ComplementRule,
    ComplementRuleCreate,
    Coupon,
    CouponStatus,
    Offer,
    OfferCreate,
)

log = logging.getLogger(__name__)

OFFER_TABLE: Table = SQLModel.metadata.tables[Offer.__tablename__]
COUPON_TABLE: Table = SQLModel.metadata.tables[Coupon.__tablename__]

CENT = Decimal("0.01")
#: Codes carry 50 random bits: a collision is a once-in-a-lifetime event, three in a row
#: means something else is wrong (and is raised, not looped on).
CODE_ATTEMPTS = 3
#: Fields a customer was promised: they cannot change once coupons exist.
TERMS = ("discount_percent", "sku", "category", "price", "currency")

COUPONS = Counter(
    "vitrina_coupons",
    "Coupon requests by outcome: issued, repeated (same idempotency key), exhausted (stock "
    "or budget used up), not_valid (offer inactive or outside its dates), redeemed, "
    "reissued (given back by a cancelled order)",
    ["outcome"],
    registry=REGISTRY,
)
COUPON_CODES_REFUSED = Counter(
    "vitrina_coupon_codes_refused",
    "Codes named by an order that were not redeemed, by reason: malformed, unknown, "
    "not_owner, expired, redeemed (by another order), not_in_order",
    ["reason"],
    registry=REGISTRY,
)


class OfferError(ValueError):
    """An offer cannot be saved as asked; the message names the problem, not the values."""


class OfferTermsFixedError(OfferError):
    """The change would alter what customers holding coupons were promised."""


class CouponConflictError(ValueError):
    """An idempotency key already names a coupon of another customer or offer."""


# --- offers ----------------------------------------------------------------------------------


def unit_discount(offer: Offer) -> Decimal:
    """The discount on one unit at the offer's price, in cents: what a coupon costs the
    budget."""
    return (offer.price * offer.discount_percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)


def is_valid_at(offer: Offer, now: datetime) -> bool:
    return offer.active and offer.valid_from <= now and (
        offer.valid_until is None or now < offer.valid_until
    )


def is_exhausted(offer: Offer) -> bool:
    """No coupon of this offer can be issued any more (as of this reading of the row)."""
    if offer.coupon_limit is not None and offer.coupons_issued >= offer.coupon_limit:
        return True
    return offer.budget_limit is not None and (
        offer.budget_used + unit_discount(offer) > offer.budget_limit
    )


def get_offer(session: Session, *, tenant: str, key: str) -> Offer | None:
    return session.exec(select(Offer).where(Offer.tenant == tenant, Offer.key == key)).first()


def list_offers(
    session: Session, *, tenant: str, limit: int = 100, offset: int = 0,
    active_only: bool = False,
) -> Sequence[Offer]:
    statement = select(Offer).where(Offer.tenant == tenant)
    if active_only:
        statement = statement.where(col(Offer.active).is_(True))
    return session.exec(statement.order_by(col(Offer.key)).limit(limit).offset(offset)).all()


def upsert_offer(
    session: Session, *, tenant: str, key: str, data: OfferCreate, now: datetime
) -> tuple[Offer, bool]:
    """Create or replace the offer `key`; returns it and whether it is new. Its counters
    (coupons issued, budget used) are kept; its terms are fixed once coupons exist."""
    existing = session.exec(
        select(Offer).where(Offer.tenant == tenant, Offer.key == key).with_for_update()
    ).first()
    fields = data.model_dump(exclude={"valid_from"})
    fields["currency"] = data.currency.value
    valid_from = data.valid_from or (existing.valid_from if existing else now)
    if data.valid_until is not None and data.valid_until <= valid_from:
        raise OfferError("valid_until must be after valid_from")
    fields["valid_from"] = valid_from
    if existing is None:
        inserted = session.connection().execute(
            dialect_insert(session, OFFER_TABLE)
            .values(tenant=tenant, key=key, created_at=now, updated_at=now,
                    coupons_issued=0, budget_used=Decimal("0.00"), **fields)
            .on_conflict_do_nothing(index_elements=["tenant", "key"])
            .returning(OFFER_TABLE.c.id)
        ).first()
        if inserted is not None:
            offer = session.get(Offer, int(inserted[0]))
            assert offer is not None
            return offer, True
        # Created by a concurrent request since we looked: replace that one.
        existing = session.exec(
            select(Offer).where(Offer.tenant == tenant, Offer.key == key).with_for_update()
        ).one()
    if existing.coupons_issued > 0:
        changed = [name for name in TERMS if getattr(existing, name) != fields[name]]
        if changed:
            raise OfferTermsFixedError(
                f"offer {key!r} has issued coupons: its {', '.join(changed)} cannot change "
                "(save the new terms as another offer)"
            )
    for name, value in fields.items():
        setattr(existing, name, value)
    existing.updated_at = now
    session.add(existing)
    session.flush()
    return existing, False


def deactivate_offer(session: Session, *, tenant: str, key: str, now: datetime) -> Offer | None:
    """Stop issuing coupons of the offer and stop choosing it; coupons already issued stay
    redeemable (customers were promised them) and the row stays for their audit."""
    offer = get_offer(session, tenant=tenant, key=key)
    if offer is None:
        return None
    if offer.active:
        offer.active = False
        offer.updated_at = now
        session.add(offer)
        session.flush()
    return offer


# --- complementary categories ----------------------------------------------------------------


def replace_complements(
    session: Session, *, tenant: str, rules: Sequence[ComplementRuleCreate]
) -> list[ComplementRule]:
    """The tenant's complement rules become `rules` (one transaction: never half a list)."""
    pairs = [(rule.from_category, rule.to_category) for rule in rules]
    if len(set(pairs)) != len(pairs):
        raise OfferError("each from_category/to_category pair may appear only once")
    session.execute(delete(ComplementRule).where(col(ComplementRule.tenant) == tenant))
    rows = [ComplementRule(tenant=tenant, **rule.model_dump()) for rule in rules]
    session.add_all(rows)
    session.flush()
    return list(list_complements(session, tenant=tenant))


def list_complements(session: Session, *, tenant: str) -> Sequence[ComplementRule]:
    return session.exec(
        select(ComplementRule).where(ComplementRule.tenant == tenant).order_by(
            col(ComplementRule.from_category), col(ComplementRule.priority),
            col(ComplementRule.to_category),
        )
    ).all()


# --- purchase history and cross-selling ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bought:
    """What a customer bought and kept (not of a cancelled or fully refunded order, not
    every item taken back): one returned dryer does not bar dryer offers."""

    categories: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()


def bought_items(session: Session, *, customer_ids: Iterable[int]) -> dict[int, Bought]:
    """`Bought` for each of `customer_ids`, in one query (a customer who bought nothing
    gets an empty one)."""
    ids = sorted(set(customer_ids))
    categories: dict[int, set[str]] = {cid: set() for cid in ids}
    skus: dict[int, set[str]] = {cid: set() for cid in ids}
    for customer_id, category, sku in session.exec(
        select(OrderLine.customer_id, OrderLine.category, OrderLine.sku)
        .outerjoin(Order, ORDER_OF_LINE)
        .where(one_of(session, OrderLine.customer_id, ids), still_purchased()).distinct()
    ).all():
        assert customer_id is not None
        categories[customer_id].add(category)
        skus[customer_id].add(sku)
    return {cid: Bought(frozenset(categories[cid]), frozenset(skus[cid])) for cid in ids}


def outside_every_segment(_segment: str) -> bool:
    """Membership when the caller cannot tell: a restricted offer goes to nobody."""
    return False


#: Whether the customer at hand is in the named segment.
MemberOf = Callable[[str], bool]


def offerable(
    offers: Iterable[Offer], *, bought: Bought, now: datetime,
    member_of: MemberOf = outside_every_segment,
) -> list[Offer]:
    """The offers among `offers` this customer may be made now: valid, not run out, on
    no category or sku the customer already bought (`bought`: no dryer offer after a
    dryer), and, for an offer restricted to a segment, only if `member_of` says the
    customer is in it (by default nobody is: a caller that cannot tell never hands one
    out)."""
    return [
        offer for offer in offers
        if is_valid_at(offer, now) and not is_exhausted(offer)
        and (offer.segment is None or member_of(offer.segment))
        and (offer.category is None or offer.category not in bought.categories)
        and (offer.sku is None or offer.sku not in bought.skus)
    ]


def tenant_offers(session: Session, *, tenant: str) -> Sequence[Offer]:
    """Every offer of the tenant, to choose among in memory: a shop has tens of offers,
    not thousands."""
    return session.exec(select(Offer).where(Offer.tenant == tenant)).all()


def pick_cross_sell(
    rules: Iterable[ComplementRule], offers: Iterable[Offer], *, bought: Bought,
    from_categories: Iterable[str], now: datetime, member_of: MemberOf = outside_every_segment,
) -> Offer | None:
    """The offer to cross-sell after purchases in `from_categories`, or None.

    Complement rules from those categories are followed in priority order (lowest first;
    a category reached by several rules takes its best priority). Within one category the
    offer chosen is active and valid at `now`, not exhausted, on a category and a sku the
    customer never bought, and in its segment if it has one (`offerable`); ties go to the
    smallest discount (the cheapest incentive that fits: bigger ones are escalations a
    scenario names by key), then the offer ending soonest, then the key, so the same
    history always yields the same offer. Offers with a sku but no category are never
    cross-sold: complement rules speak of categories.
    """
    sources = set(from_categories)
    rank: dict[str, int] = {}
    for rule in sorted(rules, key=lambda rule: (rule.priority, rule.to_category)):
        if rule.from_category in sources:
            rank.setdefault(rule.to_category, rule.priority)
    if not rank:
        return None
    reached = [offer for offer in offers if offer.category in rank]
    eligible = offerable(reached, bought=bought, now=now, member_of=member_of)
    never = datetime.max.replace(tzinfo=now.tzinfo)
    return min(
        eligible,
        key=lambda offer: (
            rank[offer.category or ""], offer.discount_percent,
            offer.valid_until or never, offer.key,
        ),
        default=None,
    )


# --- coupons ---------------------------------------------------------------------------------


def _coupon_by_key(session: Session, *, tenant: str, idempotency_key: str) -> Coupon | None:
    return session.exec(
        select(Coupon).where(Coupon.tenant == tenant, Coupon.idempotency_key == idempotency_key)
    ).first()


def _repeated(coupon: Coupon, *, customer_id: int, offer: Offer) -> Coupon:
    if coupon.customer_id != customer_id or coupon.offer_id != offer.id:
        raise CouponConflictError(
            "the idempotency key already names a coupon of another customer or offer"
        )
    COUPONS.labels(outcome="repeated").inc()
    return coupon


def issue_coupon(
    session: Session, *, tenant: str, customer_id: int, offer: Offer, valid_for: timedelta,
    idempotency_key: str, now: datetime, valid_from: datetime | None = None,
) -> Coupon | None:
    """A single-use coupon of `offer` for the customer, valid for `valid_for` from
    `valid_from` (when the message carrying it can reach the customer; `now` when not
    given), never past the offer's own end. The same `idempotency_key` returns the same
    coupon, counted once. None when the offer is not valid at `now` or its stock or budget
    is used up.

    The coupon row is written first (so a concurrent request with the same key waits for
    it and then finds it), then counted against the offer with a conditional UPDATE; if
    that finds the offer exhausted, the coupon row is taken back in the same transaction.
    """
    if offer.id is None or offer.tenant != tenant:
        raise ValueError("the offer is not a stored offer of this tenant")
    if valid_for <= timedelta(0):
        raise ValueError("valid_for must be positive")
    customer = session.get(Customer, customer_id)
    if customer is None or customer.tenant != tenant:
        raise ValueError(f"customer {customer_id} of tenant {tenant!r} not found")
    if not is_valid_at(offer, now):
        earlier = _coupon_by_key(session, tenant=tenant, idempotency_key=idempotency_key)
        if earlier is not None:
            return _repeated(earlier, customer_id=customer_id, offer=offer)
        COUPONS.labels(outcome="not_valid").inc()
        return None
    expires_at = max(now, valid_from or now) + valid_for
    if offer.valid_until is not None:
        expires_at = min(expires_at, offer.valid_until)
    row: dict[str, Any] | None = None
    connection = session.connection()
    for _ in range(CODE_ATTEMPTS):
        # Nothing is inserted when the key is taken (an earlier or a concurrent twin:
        # found below) or, rarely, the code.
        inserted = connection.execute(_coupon_insert(connection.dialect.name), {
            "tenant": tenant, "code": new_code(offer.key), "customer_id": customer_id,
            "offer_id": offer.id, "issued_at": now, "expires_at": expires_at,
            "idempotency_key": idempotency_key,
        }).mappings().first()
        if inserted is not None:
            row = dict(inserted)
            break
        earlier = _coupon_by_key(session, tenant=tenant, idempotency_key=idempotency_key)
        if earlier is not None:
            return _repeated(earlier, customer_id=customer_id, offer=offer)
    if row is None:
        raise RuntimeError(f"no unused coupon code in {CODE_ATTEMPTS} draws")
    if not _count_against_offer(session, offer=offer, now=now):
        connection.execute(delete(COUPON_TABLE).where(COUPON_TABLE.c.id == row["id"]))
        COUPONS.labels(outcome="exhausted").inc()
        return None
    if offer in session:
        session.expire(offer, ["coupons_issued", "budget_used"])
    COUPONS.labels(outcome="issued").inc()
    return _as_stored(session, Coupon(**row))


def _as_stored(session: Session, coupon: Coupon) -> Coupon:
    """`coupon`, built from the row its INSERT returned, in the session as if read back
    (a coupon per send would otherwise cost a SELECT of what was just written)."""
    make_transient_to_detached(coupon)
    session.add(coupon)
    return coupon


@functools.cache
def _coupon_insert(dialect: str) -> Executable:
    """The coupon INSERT, built once per dialect (it is issued for every coupon)."""
    return (dialect_insert_for(dialect, COUPON_TABLE).on_conflict_do_nothing()
            .returning(*COUPON_TABLE.c))


@functools.cache
def _counting() -> Executable:
    """One more coupon and its discount on an offer's counters, if they allow it: built
    once (it is issued for every coupon)."""
    table = OFFER_TABLE.c
    now = bindparam("now", type_=table.valid_from.type)
    budget_after = func.round(table.budget_used + bindparam("discount", type_=Numeric(12, 2)), 2)
    return (
        update(OFFER_TABLE)
        .where(
            table.id == bindparam("offer_id"),
            table.active.is_(True),
            table.valid_from <= now,
            or_(table.valid_until.is_(None), table.valid_until > now),
            or_(table.coupon_limit.is_(None), table.coupons_issued < table.coupon_limit),
            or_(table.budget_limit.is_(None), budget_after <= func.round(table.budget_limit, 2)),
        )
        .values(coupons_issued=table.coupons_issued + 1, budget_used=budget_after)
    )


def _count_against_offer(session: Session, *, offer: Offer, now: datetime) -> bool:
    """One more coupon and its discount on the offer's counters, if they allow it."""
    result = session.connection().execute(
        _counting(), {"offer_id": offer.id, "now": now, "discount": unit_discount(offer)}
    )
    return bool(result.rowcount == 1)


def coupon_status(coupon: Coupon, *, now: datetime) -> CouponStatus:
    if coupon.redeemed_at is not None:
        return CouponStatus.REDEEMED
    return CouponStatus.ACTIVE if now < coupon.expires_at else CouponStatus.EXPIRED


def customer_coupons(
    session: Session, *, customer_id: int, limit: int = 100
) -> list[tuple[Coupon, Offer]]:
    """The customer's coupons with their offers, newest first."""
    rows = session.exec(
        select(Coupon, Offer)
        .join(Offer, col(Offer.id) == col(Coupon.offer_id))
        .where(Coupon.customer_id == customer_id)
        .order_by(col(Coupon.issued_at).desc(), col(Coupon.id).desc())
        .limit(limit)
    ).all()
    return [(coupon, offer) for coupon, offer in rows]


def offer_coupons(
    session: Session, *, offer: Offer, now: datetime, limit: int = 100
) -> tuple[dict[CouponStatus, int], Sequence[Coupon]]:
    """How many of the offer's coupons are active, redeemed and expired, and the newest
    of them."""
    redeemed = col(Coupon.redeemed_at).is_not(None)
    status = case(
        (redeemed, CouponStatus.REDEEMED.value),
        (col(Coupon.expires_at) > now, CouponStatus.ACTIVE.value),
        else_=CouponStatus.EXPIRED.value,
    )
    counts = {state: 0 for state in CouponStatus}
    for state, number in session.exec(
        select(status, func.count()).where(Coupon.offer_id == offer.id).group_by(status)
    ).all():
        counts[CouponStatus(state)] = number
    newest = session.exec(
        select(Coupon).where(Coupon.offer_id == offer.id)
        .order_by(col(Coupon.issued_at).desc(), col(Coupon.id).desc()).limit(limit)
    ).all()
    return counts, newest


def _applies_to(offer: Offer, items: Sequence[LineItem]) -> bool:
    """Whether the order has what the offer is on: its product when it names one (the
    customer was offered that product), else a line of its category."""
    if offer.sku is not None:
        return any(item.sku == offer.sku for item in items)
    return any(item.category == offer.category for item in items)


def _refusal(
    coupon: Coupon, offer: Offer, *, customer_id: int, order_id: str,
    items: Sequence[LineItem], ordered_at: datetime,
) -> str | None:
    """Why this order cannot redeem the coupon ("" when it already did), or None."""
    if coupon.customer_id != customer_id:
        return "not_owner"
    if coupon.redeemed_at is not None:
        return "" if coupon.order_id == order_id else "redeemed"
    if ordered_at >= coupon.expires_at:
        return "expired"
    if not _applies_to(offer, items):
        return "not_in_order"
    return None


def _refuse(reason: str, *, order_id: str, customer_id: int | None) -> None:
    """Count and log a refused code; the code itself is not logged (it is a bearer token)."""
    COUPON_CODES_REFUSED.labels(reason=reason).inc()
    log.info("coupon code of order %s (customer %s) not redeemed: %s",
             order_id, customer_id, reason)


def redeem_coupons(
    session: Session, *, tenant: str, customer_id: int | None, order_id: str,
    codes: Sequence[str], items: Sequence[LineItem], now: datetime,
    ordered_at: datetime | None = None,
) -> list[Coupon]:
    """Redeem the order's coupon codes; returns the coupons this call redeemed.

    A code counts once, for its own customer, if it has not expired by the time the order
    was placed (`ordered_at`, at the latest `now`; `now` when not given) and the order holds
    what its offer is on. Anything else is ignored (the order stands) and counted by
    reason. The same order arriving again redeems nothing new and is not counted.
    """
    when = now if ordered_at is None else min(ordered_at, now)
    wanted = list(dict.fromkeys(normalize_code(code) for code in codes))
    for code in wanted:
        if not is_code(code):
            _refuse("malformed", order_id=order_id, customer_id=customer_id)
    lookups = [code for code in wanted if is_code(code)]
    if not lookups:
        return []
    found = {
        coupon.code: (coupon, offer)
        for coupon, offer in session.exec(
            select(Coupon, Offer)
            .join(Offer, col(Offer.id) == col(Coupon.offer_id))
            .where(Coupon.tenant == tenant, col(Coupon.code).in_(lookups))
        ).all()
    }
    redeemed: list[Coupon] = []
    for code in lookups:
        if code not in found:
            _refuse("unknown", order_id=order_id, customer_id=customer_id)
            continue
        coupon, offer = found[code]
        reason = "not_owner" if customer_id is None else _refusal(
            coupon, offer, customer_id=customer_id, order_id=order_id, items=items,
            ordered_at=when,
        )
        if reason is None:
            reason = _mark_redeemed(session, coupon=coupon, order_id=order_id, at=when)
        if reason is None:
            redeemed.append(coupon)
            COUPONS.labels(outcome="redeemed").inc()
        elif reason:
            _refuse(reason, order_id=order_id, customer_id=customer_id)
    return redeemed


def _mark_redeemed(session: Session, *, coupon: Coupon, order_id: str, at: datetime) -> str | None:
    """Record the redemption unless another order got there first (then "redeemed")."""
    result = session.connection().execute(
        update(COUPON_TABLE)
        .where(COUPON_TABLE.c.id == coupon.id, COUPON_TABLE.c.redeemed_at.is_(None))
        .values(redeemed_at=at, order_id=order_id)
    )
    session.refresh(coupon)
    if result.rowcount == 1:
        return None
    return "" if coupon.order_id == order_id else "redeemed"


def reissue_coupons(
    session: Session, *, tenant: str, order_id: str, now: datetime
) -> list[Coupon]:
    """The order was cancelled: its coupons whose offer says `reissue_on_cancel` and
    that have not expired become redeemable again (the cancelled order is kept on
    them as `reissued_from_order_id`); the others stay spent. Returns those given back."""
    candidates = session.exec(
        select(Coupon).join(Offer, col(Offer.id) == col(Coupon.offer_id))
        .where(Coupon.tenant == tenant, Coupon.order_id == order_id,
               col(Coupon.redeemed_at).is_not(None), col(Offer.reissue_on_cancel).is_(True),
               col(Coupon.expires_at) > now)
        .order_by(col(Coupon.id))
    ).all()
    given_back: list[Coupon] = []
    for coupon in candidates:
        result = session.connection().execute(
            update(COUPON_TABLE)
            .where(COUPON_TABLE.c.id == coupon.id, COUPON_TABLE.c.order_id == order_id,
                   COUPON_TABLE.c.redeemed_at.is_not(None))
            .values(redeemed_at=None, order_id=None, reissued_at=now,
                    reissued_from_order_id=order_id)
        )
        session.refresh(coupon)
        if result.rowcount == 1:
            given_back.append(coupon)
            COUPONS.labels(outcome="reissued").inc()
            log.info("coupon %s given back: order %s was cancelled", coupon.id, order_id)
    return given_back
