"""Presence transitions of devices linked to customers, as scenario triggers.

A trigger names a customer, a store and a time: it is the customer's location, so it is
made only for customers whose latest answer on location-based marketing is a yes (the
rule the API applies to the app's location reports, `cloud.api.places`). Everyone else's
visits stay what a non-customer's are: pseudonymous events for footfall, under the
retention rules of `cloud.presence.retention`.

An enter joins a visit the customer's app already opened through the store's beacon
(`cloud.presence.stays`): one visit, one `presence.enter`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from cloud.channels import LOCATION_MARKETING
from cloud.customers.consent import latest_answers
from cloud.customers.crud import customers_for_pseudonyms
from cloud.metrics import PRESENCE_ENTERS_JOINED, PRESENCE_TRIGGERS_WITHHELD
from cloud.presence.stays import StaySource, load_stays, note_sighting
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
    """A trigger per presence transition of a device linked to a customer who said yes
    to location-based marketing; returns how many. Daily (unlinkable) pseudonyms never
    belong to a customer and are skipped."""
    stable = [event for event in events if event.scope is PseudonymScope.STABLE]
    rows: list[dict[str, Any]] = []
    for tenant in sorted({event.tenant for event in stable}):
        of_tenant = [event for event in stable if event.tenant == tenant]
        owners = customers_for_pseudonyms(
            session, tenant=tenant, pseudonyms=[event.pseudonym for event in of_tenant]
        )
        consenting = location_consenting(session, sorted(set(owners.values())))
        stays = load_stays(session, sorted(consenting))
        for event in of_tenant:
            customer_id = owners.get(event.pseudonym)
            if customer_id is None:
                continue
            if customer_id not in consenting:
                PRESENCE_TRIGGERS_WITHHELD.inc()
                continue
            entering = event.transition is Transition.ENTER
            when = event.first_seen if entering else event.last_seen
            if not note_sighting(session, stays, tenant=tenant, customer_id=customer_id,
                                 store=event.store, source=StaySource.GATEWAY, at=when,
                                 entering=entering):
                PRESENCE_ENTERS_JOINED.labels(source=StaySource.GATEWAY.value).inc()
                continue
            rows.append(trigger_row(
                tenant=tenant, customer_id=customer_id, kind=PRESENCE_KINDS[event.transition],
                occurred_at=when, source_key=f"presence:{event.event_id}", now=now,
                attributes={"store": event.store, "zone": event.zone,
                            "gateway": event.gateway, "dwell_s": event.dwell_s},
            ))
    session.flush()
    return record_triggers(session, rows)


def location_consenting(session: Session, customer_ids: Sequence[int]) -> set[int]:
    """Those of `customer_ids` whose latest answer on location-based marketing is a yes."""
    answers = latest_answers(session, customer_ids)
    return {
        customer_id for customer_id in customer_ids
        if (answer := answers.get((customer_id, LOCATION_MARKETING))) is not None
        and answer.granted
    }
