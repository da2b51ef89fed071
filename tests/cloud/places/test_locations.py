"""Location reports against stored geofences: the tracker's hysteresis, dwell, hours and
silence rules with stays kept in the database, every transition a scenario trigger."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.customers.crud import create_customer, get_customer
from cloud.customers.models import CustomerCreate
from cloud.db import session_scope
from cloud.erasure import erase_customer
from cloud.places.crud import (
    StoredGeofences,
    delete_geofence,
    forget_stays,
    put_geofence,
    put_store,
)
from cloud.places.index import GeofenceRegistry
from cloud.places.locations import (
    SILENCE_EXIT,
    LocationUpdate,
    current_stays,
    due_geofence_dwells,
    report_locations,
)
from cloud.places.models import GeofencePresence, StoreCreate
from cloud.places.tracker import GeofenceTracker, LocationReport
from cloud.triggers import Trigger
from shared.presence import Transition
from tests.cloud.places.factories import at_offset

MADRID = (40.4168, -3.7038)
#: A Monday, 12:00 in Madrid.
T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
ENTER, DWELL, EXIT = Transition.ENTER, Transition.DWELL, Transition.EXIT


def circle(radius_m: float = 100.0, **changes: Any) -> dict[str, Any]:
    return {"store": "madrid-01",
            "shape": {"circle": {"lat": MADRID[0], "lon": MADRID[1], "radius_m": radius_m}},
            "dwell_after_s": 300, **changes}


def setup(engine: Engine, tenant: str, **geofences: dict[str, Any]) -> int:
    """A store with `geofences`, and a customer; returns the customer's id."""
    with session_scope(engine) as session:
        put_store(session, tenant=tenant, key="madrid-01", now=T0,
                  data=StoreCreate(name="Madrid Centro", time_zone="Europe/Madrid"))
        for geofence_id, definition in geofences.items():
            put_geofence(session, tenant=tenant, geofence_id=geofence_id,
                         definition=definition, now=T0)
        customer = create_customer(session, tenant=tenant, now=T0,
                                   data=CustomerCreate(first_name="Juan"))
        session.commit()
        assert customer.id is not None
        return customer.id


def fix(tenant: str, customer_id: int, east_m: float, accuracy_m: float, at: datetime
        ) -> LocationReport:
    lat, lon = at_offset(*MADRID, east_m, 0.0)
    return LocationReport(tenant, str(customer_id), lat, lon, accuracy_m, at)


class Reporter:
    """Reports fixes for one customer, each in its own transaction, as the API does."""

    def __init__(self, engine: Engine, tenant: str, customer_id: int) -> None:
        self.engine, self.tenant, self.customer_id = engine, tenant, customer_id
        self.geofences = StoredGeofences()

    def __call__(self, east_m: float, accuracy_m: float, at: datetime) -> LocationUpdate:
        return self.many([(east_m, accuracy_m, at)])

    def many(self, fixes: list[tuple[float, float, datetime]]) -> LocationUpdate:
        with session_scope(self.engine) as session:
            index, _version = self.geofences.index(session, tenant=self.tenant)
            update = report_locations(
                session, tenant=self.tenant, customer_id=self.customer_id, index=index,
                reports=[fix(self.tenant, self.customer_id, *each) for each in fixes],
                now=max(at for _e, _a, at in fixes),
            )
            session.commit()
            return update


def kinds(update: LocationUpdate) -> list[tuple[str, Transition]]:
    return [(item.transition.geofence_id, item.transition.kind) for item in update.transitions]


def triggers(session: Session, customer_id: int) -> list[Trigger]:
    return list(session.exec(select(Trigger).where(Trigger.customer_id == customer_id)
                             .where(col(Trigger.kind).like("geofence.%"))
                             .order_by(col(Trigger.id))).all())


def test_enter_dwell_exit_with_hysteresis_become_triggers(engine: Engine, tenant: str) -> None:
    customer = setup(engine, tenant, shop=circle())
    report = Reporter(engine, tenant, customer)
    assert kinds(report(90.0, 20.0, T0)) == []  # the disc straddles the border: not sure
    entered = report(50.0, 20.0, T0 + timedelta(seconds=10))
    assert kinds(entered) == [("shop", ENTER)]
    assert entered.stays["shop"].entered_at == T0 + timedelta(seconds=10)
    # straddling again: still inside; a replay or an older report changes nothing
    assert kinds(report(110.0, 20.0, T0 + timedelta(seconds=20))) == []
    assert kinds(report(110.0, 20.0, T0 + timedelta(seconds=20))) == []
    older = report(500.0, 5.0, T0)
    assert (kinds(older), older.ignored) == ([], 1)
    dwelt = report(0.0, 5.0, T0 + timedelta(seconds=310))
    assert kinds(dwelt) == [("shop", DWELL)]
    assert kinds(report(0.0, 5.0, T0 + timedelta(seconds=400))) == []  # once per stay
    left = report(200.0, 20.0, T0 + timedelta(seconds=500))
    assert kinds(left) == [("shop", EXIT)]
    assert left.stays == {}
    with session_scope(engine) as session:
        rows = triggers(session, customer)
        assert current_stays(session, customer_id=customer) == {}
    assert [row.kind for row in rows] == ["geofence.enter", "geofence.dwell", "geofence.exit"]
    assert {row.tenant for row in rows} == {tenant}
    assert rows[0].attributes == {"geofence": "shop", "store": "madrid-01"}
    assert rows[0].occurred_at == T0 + timedelta(seconds=10)
    assert rows[0].source_key == (
        f"geofence:{customer}:shop:enter:{(T0 + timedelta(seconds=10)).isoformat()}")
    assert [item.trigger_id for item in left.transitions] == [rows[2].id]
    concurrent_reports_take_turns(engine, tenant)


def concurrent_reports_take_turns(engine: Engine, tenant: str) -> None:
    """Two processes handling the same customer at once: the customer's row lock makes
    them take turns, so the stay is entered once and nothing fails."""
    customer = setup(engine, tenant)
    barrier = threading.Barrier(2)
    updates: list[LocationUpdate] = []

    def report(seconds: int) -> None:
        reporter = Reporter(engine, tenant, customer)
        barrier.wait()
        updates.append(reporter(0.0, 5.0, T0 + timedelta(seconds=seconds)))

    threads = [threading.Thread(target=report, args=(seconds,)) for seconds in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(update.transitions) for update in updates) == [0, 1]
    with session_scope(engine) as session:
        assert [row.kind for row in triggers(session, customer)] == ["geofence.enter"]


def test_due_dwells_fire_without_a_report_once_while_open_at_the_current_threshold(
    engine: Engine, tenant: str
) -> None:
    # open 09:00-13:00 Madrid time (07:00-11:00 UTC in June)
    hours = {"mon": [["09:00", "13:00"]]}
    customer = setup(engine, tenant, shop=circle(hours=hours), always=circle(50.0),
                     slow=circle(120.0, dwell_after_s=3600))
    Reporter(engine, tenant, customer)(0.0, 5.0, T0 + timedelta(minutes=50))

    def due(minutes: int) -> int:
        with session_scope(engine) as session:
            count = due_geofence_dwells(session, now=T0 + timedelta(minutes=minutes))
            session.commit()
            return count

    assert due(54) == 0
    assert due(60) == 1  # 11:00 UTC: "always" dwells, "shop" has just closed
    assert due(61) == 0
    with session_scope(engine) as session:  # a lower threshold applies to stays under way
        put_geofence(session, tenant=tenant, geofence_id="slow", now=T0,
                     definition=circle(120.0, dwell_after_s=60))
        session.commit()
    assert due(62) == 1
    with session_scope(engine) as session:
        rows = triggers(session, customer)
        stays = current_stays(session, customer_id=customer)
    assert [(row.kind, row.attributes["geofence"]) for row in rows] == [
        ("geofence.enter", "always"), ("geofence.enter", "shop"), ("geofence.enter", "slow"),
        ("geofence.dwell", "always"), ("geofence.dwell", "slow")]
    assert rows[3].occurred_at == T0 + timedelta(minutes=60)
    assert (stays["always"].dwelt, stays["shop"].dwelt, stays["slow"].dwelt) == (
        True, False, True)


def test_silence_deletion_forgetting_and_erasure_end_stays(engine: Engine, tenant: str) -> None:
    customer = setup(engine, tenant, shop=circle(dwell_after_s=60), corner=circle(30.0))
    report = Reporter(engine, tenant, customer)
    report(0.0, 5.0, T0)
    with session_scope(engine) as session:
        assert delete_geofence(session, tenant=tenant, geofence_id="corner",
                               now=T0 + timedelta(seconds=30)) is not None
        session.commit()
    with session_scope(engine) as session:
        assert set(current_stays(session, customer_id=customer)) == {"shop"}
        last = triggers(session, customer)[-1]
    assert (last.kind, last.attributes, last.occurred_at) == (
        "geofence.exit", {"geofence": "corner", "store": "madrid-01"},
        T0 + timedelta(seconds=30))
    # the next report, judged by an index without "corner", has nothing more to exit
    assert kinds(report(0.0, 5.0, T0 + timedelta(minutes=2))) == [("shop", DWELL)]
    with session_scope(engine) as session:
        assert due_geofence_dwells(session, now=T0 + SILENCE_EXIT) == 0
        assert due_geofence_dwells(session, now=T0 + timedelta(minutes=2) + SILENCE_EXIT) == 1
        session.commit()
    with session_scope(engine) as session:
        assert current_stays(session, customer_id=customer) == {}
        assert [row.kind for row in triggers(session, customer)][-1] == "geofence.exit"
    # without the periodic check, the next report applies the silence rule itself
    report(0.0, 5.0, T0 + timedelta(hours=10))
    late = report(0.0, 5.0, T0 + timedelta(hours=15))
    assert kinds(late) == [("shop", EXIT), ("shop", ENTER)]
    assert late.stays["shop"].entered_at == T0 + timedelta(hours=15)
    with session_scope(engine) as session:
        assert forget_stays(session, customer_id=customer) == 1
        session.commit()
    report(0.0, 5.0, T0 + timedelta(hours=16))  # enters again
    with session_scope(engine) as session:
        found = get_customer(session, tenant=tenant, customer_id=customer)
        assert found is not None
        record = erase_customer(session, customer=found, now=T0)
        session.commit()
        assert record.counts["geofence_stays"] == 1
        assert session.exec(select(GeofencePresence)).all() == []


def test_stored_stays_decide_exactly_as_the_in_memory_tracker(
    engine: Engine, tenant: str
) -> None:
    """The same random walk through overlapping geofences, fed to GeofenceTracker and
    to the database in batches (sorted there by time), gives the same transitions."""
    definitions = {"shop": circle(80.0), "corner": circle(25.0, dwell_after_s=60),
                   "street": circle(250.0, dwell_after_s=120)}
    customer = setup(engine, tenant, **definitions)
    report = Reporter(engine, tenant, customer)
    with session_scope(engine) as session:
        index, _version = report.geofences.index(session, tenant=tenant)
    tracker = GeofenceTracker(GeofenceRegistry(index.geofences(tenant)))
    rng = random.Random(7)
    walk = [(rng.uniform(-300.0, 300.0), rng.choice([0.0, 5.0, 30.0, 120.0]),
             T0 + timedelta(seconds=20 * step)) for step in range(60)]
    expected = [(t.geofence_id, t.kind, t.at) for t in tracker.update_many(
        [fix(tenant, customer, *each) for each in walk])]
    got: list[tuple[str, Transition, datetime]] = []
    for start in range(0, len(walk), 7):
        update = report.many(list(reversed(walk[start:start + 7])))
        got.extend((i.transition.geofence_id, i.transition.kind, i.transition.at)
                   for i in update.transitions)
    assert got == expected
    assert {kind for _id, kind, _at in expected} == {ENTER, DWELL, EXIT}

