"""Presence transitions of devices linked to customers, as scenario triggers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from cloud.customers.crud import customers_for_pseudonyms
from cloud.triggers import TriggerKind, record_triggers, trigger_row
from shared.presence import PresenceEvent, PseudonymScope, Transition

PRESENCE_KINDS: dict[Transition, TriggerKind] = {
    Transition.ENTER: TriggerKind.PRESENCE_ENTER,
    Transition.DWELL: TriggerKind.PRESENCE_DWELL,
    Transition.EXIT: TriggerKind.PRESENCE_EXIT,
}


def record_presence_triggers(
    session: Session, *, events: Sequence[PresenceEvent], now: datetime
) -> int:
    """A trigger per presence transition of a device linked to a customer; returns how
    many. Daily (unlinkable) pseudonyms never belong to a customer and are skipped."""
    stable = [event for event in events if event.scope is PseudonymScope.STABLE]
    rows: list[dict[str, Any]] = []
    for tenant in sorted({event.tenant for event in stable}):
        of_tenant = [event for event in stable if event.tenant == tenant]
        owners = customers_for_pseudonyms(
            session, tenant=tenant, pseudonyms=[event.pseudonym for event in of_tenant]
        )
        for event in of_tenant:
            customer_id = owners.get(event.pseudonym)
            if customer_id is None:
                continue
            when = event.first_seen if event.transition is Transition.ENTER else event.last_seen
            rows.append(trigger_row(
                tenant=tenant, customer_id=customer_id, kind=PRESENCE_KINDS[event.transition],
                occurred_at=when, source_key=f"presence:{event.event_id}", now=now,
                attributes={"store": event.store, "zone": event.zone,
                            "gateway": event.gateway, "dwell_s": event.dwell_s},
            ))
    return record_triggers(session, rows)
