"""A store-beacon report as a presence transition: the same triggers as a gateway's.

An enter opens the customer's visit of the store, or joins the one a gateway (or an
earlier report) opened (`cloud.presence.stays`); only an opening records a
`presence.enter`, with the store and no zone or gateway (the phone, not a gateway,
noticed it). An exit ends a visit the store beacon opened with a `presence.exit`; a visit
a gateway opened is the gateway's to end. Runs under the customer's row lock, so a report
and a gateway batch of the same customer decide one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from cloud.beacons.models import BeaconEvent, VisitOutcome
from cloud.metrics import PRESENCE_ENTERS_JOINED
from cloud.places.crud import lock_customer
from cloud.presence.stays import VISIT_GAP, StaySource, StoreStay, load_stays, note_sighting
from cloud.triggers import TriggerKind, record_trigger

_SOURCE_KEY = "store-beacon"


@dataclass(frozen=True, slots=True)
class BeaconVisit:
    stores: tuple[str, ...]
    visit: VisitOutcome
    trigger_ids: tuple[int, ...]


def report_store_beacon(
    session: Session, *, tenant: str, customer_id: int, store: str | None,
    event: BeaconEvent, at: datetime, now: datetime,
) -> BeaconVisit:
    """Apply one report; `store` is the identified store (None: an exit that names none).
    The caller has checked consent and the beacon id, and commits."""
    if not lock_customer(session, customer_id=customer_id):
        return BeaconVisit((), "none", ())  # erased meanwhile
    stays = load_stays(session, [customer_id])
    if event == "enter":
        assert store is not None
        return _enter(session, stays, tenant=tenant, customer_id=customer_id, store=store,
                      at=at, now=now)
    return _exit(session, stays, tenant=tenant, customer_id=customer_id, store=store, at=at,
                 now=now)


def _enter(session: Session, stays: dict[tuple[int, str], StoreStay], *, tenant: str,
           customer_id: int, store: str, at: datetime, now: datetime) -> BeaconVisit:
    opens = note_sighting(session, stays, tenant=tenant, customer_id=customer_id, store=store,
                          source=StaySource.STORE_BEACON, at=at, entering=True)
    session.flush()
    if not opens:
        PRESENCE_ENTERS_JOINED.labels(source=StaySource.STORE_BEACON.value).inc()
        return BeaconVisit((store,), "joined", ())
    stay = stays[(customer_id, store)]
    trigger_id = record_trigger(
        session, tenant=tenant, customer_id=customer_id, kind=TriggerKind.PRESENCE_ENTER,
        occurred_at=at, now=now,
        source_key=f"{_SOURCE_KEY}:{customer_id}:{store}:enter:{stay.opened_at.isoformat()}",
        attributes={"store": store, "zone": None, "gateway": None, "dwell_s": 0.0},
    )
    return BeaconVisit((store,), "opened", () if trigger_id is None else (trigger_id,))


def _exit(session: Session, stays: dict[tuple[int, str], StoreStay], *, tenant: str,
          customer_id: int, store: str | None, at: datetime, now: datetime) -> BeaconVisit:
    ending = [
        stay for (_customer, key), stay in sorted(stays.items())
        if (store is None or key == store) and stay.opened_by == StaySource.STORE_BEACON
        and at - stay.last_seen_at <= VISIT_GAP
    ]
    trigger_ids: list[int] = []
    for stay in ending:
        note_sighting(session, stays, tenant=tenant, customer_id=customer_id, store=stay.store,
                      source=StaySource.STORE_BEACON, at=at, entering=False)
        trigger_id = record_trigger(
            session, tenant=tenant, customer_id=customer_id, kind=TriggerKind.PRESENCE_EXIT,
            occurred_at=at, now=now,
            source_key=f"{_SOURCE_KEY}:{customer_id}:{stay.store}:exit:"
                       f"{stay.opened_at.isoformat()}",
            attributes={"store": stay.store, "zone": None, "gateway": None,
                        "dwell_s": max(0.0, (at - stay.opened_at).total_seconds())},
        )
        if trigger_id is not None:
            trigger_ids.append(trigger_id)
    session.flush()
    stores = tuple(stay.store for stay in ending) or ((store,) if store else ())
    return BeaconVisit(stores, "ended" if ending else "none", tuple(trigger_ids))
