"""Erasing a customer: everything that identifies them goes, an anonymous record stays.

Deleted: the profile, the consent ledger, devices and tokens, identity links, messages,
webhooks about them (sent or not), coupons, commerce events, orders with their lines and
refunds, loyalty credit, geofence stays and the location fixes kept for the map. Their
presence events are kept for footfall counts but lose the pseudonym (see
`unlink_presence`), so the store's numbers stay right while nothing leads back to the
person. The record kept says when and how much, not who.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import Session, SQLModel, col, select

from cloud.commerce.loyalty import LoyaltyEntry
from cloud.commerce.models import CommerceEvent, Order, OrderLine, OrderRefund
from cloud.customers.crud import customer_pseudonyms
from cloud.customers.models import ConsentEntry, Customer, Device, ErasureRecord, IdentityLink
from cloud.messages.models import Message
from cloud.offers.models import Coupon
from cloud.places.models import GeofencePresence, RecentFix
from cloud.presence.retention import unlink_presence
from cloud.scenarios.models import CustomerTag, Journey, JourneyLog
from cloud.triggers import Trigger
from cloud.webhooks.outbound import OutboundWebhook

#: Children first: the order in which rows are deleted (foreign keys point upwards).
_OWNED: tuple[tuple[str, type[SQLModel]], ...] = (
    ("geofence_stays", GeofencePresence),
    ("recent_location_fixes", RecentFix),
    ("journey_log", JourneyLog),
    ("outbound_webhooks", OutboundWebhook),
    ("journeys", Journey),
    ("tags", CustomerTag),
    ("loyalty_entries", LoyaltyEntry),
    ("triggers", Trigger),
    ("messages", Message),
    ("coupons", Coupon),
    ("order_lines", OrderLine),
    ("order_refunds", OrderRefund),
    ("orders", Order),
    ("commerce_events", CommerceEvent),
    ("identity_links", IdentityLink),
    ("devices", Device),
    ("consents", ConsentEntry),
)


def erase_customer(session: Session, *, customer: Customer, now: datetime) -> ErasureRecord:
    """Erase `customer` in the caller's transaction; returns the anonymous record."""
    counts = delete_customer(session, customer=customer, now=now)
    record = ErasureRecord(tenant=customer.tenant, erased_at=now, counts=counts)
    session.add(record)
    session.flush()
    return record


def delete_customer(session: Session, *, customer: Customer, now: datetime) -> dict[str, int]:
    """Delete `customer` and all it owns, counted by kind; no record is kept (that is
    `erase_customer`'s, for an erasure someone asked for). `now` marks the footfall hours
    whose visits the unlinking rewrites."""
    assert customer.id is not None
    counts: dict[str, int] = {}
    counts["presence_events_unlinked"] = unlink_presence(
        session, tenant=customer.tenant,
        pseudonyms=customer_pseudonyms(session, customer_id=customer.id), now=now,
    )
    for name, model in _OWNED:
        column: Any = model.customer_id  # type: ignore[attr-defined]
        counts[name] = int(session.exec(
            select(func.count()).select_from(model).where(column == customer.id)
        ).one())
        session.execute(delete(model).where(col(column) == customer.id))
    session.execute(delete(Customer).where(col(Customer.id) == customer.id))
    session.expunge(customer)
    return counts
