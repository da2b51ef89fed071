from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import select

from cloud.customers import crud
from cloud.customers.models import (
    ConsentCreate,
    CustomerCreate,
    WifiMacRegistration,
)
from cloud.db import session_scope
from cloud.presence.crud import insert_events
from cloud.presence.models import PresenceEventRow
from cloud.presence.retention import STABLE_RETENTION, purge_unconsented
from shared.presence import PseudonymScope
from tests.cloud.factories import MAC_OF, PSEUDONYMIZER, START, make_event, wifi_pseudonym

STRANGER = wifi_pseudonym("00:1e:c2:99:99:99")


def customer_with_mac(engine: Engine, tenant: str, name: str, *, location: bool) -> None:
    with session_scope(engine) as session:
        customer = crud.create_customer(session, tenant=tenant, data=CustomerCreate(), now=START)
        crud.register_device(session, customer=customer, pseudonymizers=[PSEUDONYMIZER],
                             now=START, registration=WifiMacRegistration(kind="wifi_mac",
                                                                          mac=MAC_OF[name]))
        crud.record_consent(session, customer=customer, now=START, data=ConsentCreate(
            channel="location_marketing", granted=location, source="app"))
        session.commit()


def test_only_consenting_customers_keep_stable_pseudonyms_past_a_day(
    engine: Engine, tenant: str
) -> None:
    customer_with_mac(engine, tenant, "juan", location=True)
    customer_with_mac(engine, tenant, "ana", location=False)
    devices = [wifi_pseudonym(MAC_OF["juan"]), wifi_pseudonym(MAC_OF["ana"]), STRANGER]
    events = [
        make_event(tenant=tenant, pseudonym=pseudonym, first_seen=START + timedelta(days=day),
                   sequence=day)
        for pseudonym in devices for day in range(3)
    ]
    with session_scope(engine) as session:
        insert_events(session, events=events, received_at=START)
        session.commit()
    now = START + timedelta(days=2) + STABLE_RETENTION - timedelta(minutes=1)
    with session_scope(engine) as session:
        assert purge_unconsented(session, now=now) == 4  # days 0 and 1 of ana and the stranger
        session.commit()
        assert purge_unconsented(session, now=now) == 0  # nothing left to do
        rows = session.exec(select(PresenceEventRow).where(PresenceEventRow.tenant == tenant)).all()
    kept = [row for row in rows if row.scope == PseudonymScope.STABLE]
    last_day = (START + timedelta(days=2)).date()
    assert sorted((row.pseudonym, row.first_seen.date()) for row in kept) == sorted(
        [(devices[0], (START + timedelta(days=day)).date()) for day in range(3)]
        + [(devices[1], last_day), (STRANGER, last_day)]
    )
    replaced = [row.pseudonym for row in rows if row.scope == PseudonymScope.DAILY]
    assert len(set(replaced)) == 4  # a different stand-in per device and day
    assert not set(replaced) & set(devices)
    assert all(pseudonym.startswith("k1:") for pseudonym in replaced)
