"""Loading `CustomerFacts` for many customers at once: a handful of queries per batch of
triggers, however many scenarios and conditions there are."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import case, func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from cloud.bulk import one_of
from cloud.commerce.crud import ORDER_OF_LINE, lifetime_spend, still_purchased
from cloud.commerce.models import Order, OrderLine
from cloud.customers.consent import latest_answers
from cloud.customers.models import Customer
from cloud.messages.models import Message
from cloud.scenarios.conditions import (
    ALL_FACTS,
    MAX_LOOKBACK,
    CustomerFacts,
    FactKind,
    Purchase,
    SentMessage,
)
from cloud.scenarios.models import CustomerTag
from cloud.triggers import Trigger, TriggerKind

#: Messages that never reached the customer do not count as "sent" in conditions or caps.
NOT_SENT = frozenset({"failed", "suppressed", "expired"})
#: Triggers that count as the customer being active (reactivation scenarios ask).
VISIT_KINDS = (TriggerKind.PRESENCE_ENTER.value, TriggerKind.GEOFENCE_ENTER.value)


class CustomerRow(Protocol):
    """What facts read of a customer: a `Customer`, or a row of the customer table's
    columns (no ORM object: counting a segment reads every customer of a tenant)."""

    @property
    def id(self) -> int | None: ...
    @property
    def tenant(self) -> str: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...
    @property
    def birth_date(self) -> date | None: ...
    @property
    def locale(self) -> str | None: ...
    @property
    def time_zone(self) -> str | None: ...
    @property
    def attributes(self) -> Mapping[str, Any] | None: ...
    @property
    def created_at(self) -> datetime: ...


def profile_of(customer: CustomerRow) -> dict[str, Any]:
    return {
        "external_id": customer.external_id, "email": customer.email, "phone": customer.phone,
        "first_name": customer.first_name, "last_name": customer.last_name,
        "birth_date": customer.birth_date, "locale": customer.locale,
        "time_zone": customer.time_zone, "attributes": dict(customer.attributes or {}),
        "created_at": customer.created_at,
    }


def load_facts(
    session: Session, *, customer_ids: Iterable[int], now: datetime,
    kinds: frozenset[FactKind] = ALL_FACTS, customers: Sequence[CustomerRow] | None = None,
) -> dict[int, CustomerFacts]:
    """Facts for every existing customer among `customer_ids` (erased ones are absent):
    profile and consents, and of the rest the `kinds` asked for (a query each; the
    others stay empty). `customers`: their rows, when the caller has read them."""
    ids = sorted(set(customer_ids))
    if customers is None:
        customers = session.exec(select(Customer).where(one_of(session, Customer.id, ids))).all()
    if not customers:
        return {}
    tags: dict[int, set[str]] = defaultdict(set)
    if FactKind.TAGS in kinds:
        tag_rows = session.exec(
            select(CustomerTag.customer_id, CustomerTag.tag)
            .where(one_of(session, CustomerTag.customer_id, ids))
        )
        for customer_id, tag in tag_rows:
            tags[customer_id].add(tag)
    consents = _current_consents(session, ids)
    purchases, last_order = (
        _purchases(session, ids, now) if FactKind.PURCHASES in kinds else ({}, {})
    )
    spend = lifetime_spend(session, ids) if FactKind.SPEND in kinds else {}
    messages, last_click = (
        _messages(session, ids, now) if FactKind.MESSAGES in kinds else ({}, {})
    )
    visits: dict[int, datetime] = {}
    if FactKind.VISITS in kinds:
        visits = dict(session.exec(
            select(Trigger.customer_id, func.max(Trigger.occurred_at))
            .where(one_of(session, Trigger.customer_id, ids), col(Trigger.kind).in_(VISIT_KINDS))
            .group_by(col(Trigger.customer_id))
        ).all())
    found: dict[int, CustomerFacts] = {}
    for customer in customers:
        assert customer.id is not None
        cid = customer.id
        last = {"signup": customer.created_at}
        for name, source in (("order", last_order), ("visit", visits), ("click", last_click)):
            moment = source.get(cid)
            if moment is not None:
                last[name] = moment
        found[cid] = CustomerFacts(
            customer_id=cid, tenant=customer.tenant, profile=profile_of(customer),
            tags=frozenset(tags.get(cid, ())), consents=frozenset(consents.get(cid, ())),
            purchases=tuple(purchases.get(cid, ())), spend=spend.get(cid, {}),
            messages=tuple(messages.get(cid, ())), last=last,
        )
    return found


def _current_consents(session: Session, ids: Sequence[int]) -> dict[int, set[str]]:
    """The channels each customer's latest answer grants (the ledger's rule, as the
    send-time check reads it)."""
    granted: dict[int, set[str]] = defaultdict(set)
    for (customer_id, channel), answer in latest_answers(session, ids).items():
        if answer.granted:
            granted[customer_id].add(channel)
    return granted


def _purchases(
    session: Session, ids: Sequence[int], now: datetime
) -> tuple[dict[int, list[Purchase]], dict[int, datetime]]:
    """What each customer bought and kept (lines of cancelled or fully refunded orders,
    and lines all of whose items came back, are no purchase), and when they last
    ordered (any order: a cancelled one was activity too, as the inactivity schedule
    counts it)."""
    rows = session.connection().execute(
        core_select(col(OrderLine.customer_id), col(OrderLine.sku), col(OrderLine.category),
                    col(OrderLine.ordered_at), case((still_purchased(), 1), else_=0))
        .outerjoin(Order, ORDER_OF_LINE)
        .where(one_of(session, OrderLine.customer_id, ids),
               col(OrderLine.ordered_at) >= now - MAX_LOOKBACK)
        .order_by(col(OrderLine.ordered_at).desc())
    ).all()
    purchases: dict[int, list[Purchase]] = defaultdict(list)
    last: dict[int, datetime] = {}
    for customer_id, sku, category, ordered_at, kept in rows:
        assert customer_id is not None
        if kept:
            purchases[customer_id].append(
                Purchase(sku=sku, category=category, ordered_at=ordered_at))
        last.setdefault(customer_id, ordered_at)
    return purchases, last


def _messages(
    session: Session, ids: Sequence[int], now: datetime
) -> tuple[dict[int, list[SentMessage]], dict[int, datetime]]:
    rows = session.exec(
        select(Message)
        .where(
            one_of(session, Message.customer_id, ids),
            col(Message.created_at) >= now - MAX_LOOKBACK,
            col(Message.status).not_in(sorted(NOT_SENT)),
        )
        .order_by(col(Message.created_at).desc(), col(Message.id).desc())
    ).all()
    messages: dict[int, list[SentMessage]] = defaultdict(list)
    last_click: dict[int, datetime] = {}
    for row in rows:
        assert row.id is not None
        messages[row.customer_id].append(sent_message(row))
        if row.clicked_at is not None:
            current = last_click.get(row.customer_id)
            if current is None or row.clicked_at > current:
                last_click[row.customer_id] = row.clicked_at
    return messages, last_click


def sent_message(row: Message) -> SentMessage:
    """A message as conditions see it: a conversion that was reversed (its order
    cancelled or refunded in full) is no conversion."""
    assert row.id is not None
    converted_at = row.converted_at if row.conversion_reversed_at is None else None
    return SentMessage(
        message_id=row.id, scenario=row.scenario, step=row.step, channel=str(row.channel),
        created_at=row.created_at, opened_at=row.opened_at, clicked_at=row.clicked_at,
        converted_at=converted_at, product_category=row.product_category,
        product_sku=row.product_sku, offer_id=row.offer_id,
    )

