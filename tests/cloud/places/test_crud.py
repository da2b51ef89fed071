"""Stores and geofences stored: validation, versions, and indexes of separate processes
(here: separate StoredGeofences) following every change through the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from cloud.db import session_scope
from cloud.places.crud import (
    StoredGeofences,
    StoreInUseError,
    delete_geofence,
    delete_store,
    get_geofence,
    get_store,
    list_geofences,
    list_stores,
    put_geofence,
    put_store,
    store_geofence_ids,
    tenant_geofence_version,
)
from cloud.places.models import StoreCreate
from cloud.places.parse import parse_geofence
from cloud.places.validation import PlaceError
from tests.cloud.places.factories import at_offset

MADRID = (40.4168, -3.7038)
T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
MADRID_STORE = StoreCreate(name="Madrid Centro", time_zone="Europe/Madrid")


def circle(radius_m: float = 100.0, store: str = "madrid-01") -> dict[str, object]:
    return {"store": store, "dwell_after_s": 300,
            "shape": {"circle": {"lat": MADRID[0], "lon": MADRID[1], "radius_m": radius_m}}}


def test_stores_and_geofences_are_validated_versioned_and_followed(
    engine: Engine, tenant: str
) -> None:
    with session_scope(engine) as session:
        put_store(session, tenant=tenant, key="madrid-01", data=MADRID_STORE, now=T0)
        put_store(session, tenant=tenant, key="lisboa-01", now=T0,
                  data=StoreCreate(name="Lisboa", time_zone="Europe/Lisbon"))
        with pytest.raises(PlaceError, match=r"^time_zone: "):
            put_store(session, tenant=tenant, key="x", now=T0,
                      data=StoreCreate(name="X", time_zone="Mars/Olympus"))
        with pytest.raises(PlaceError, match=r"^store: "):
            put_store(session, tenant=tenant, key="Not A Key", data=MADRID_STORE, now=T0)
        assert tenant_geofence_version(session, tenant=tenant) == 0
        row = put_geofence(session, tenant=tenant, geofence_id="centro", definition=circle(),
                           now=T0)
        assert row.version == 1
        # the stored definition is complete (id, tenant, the store's zone) and parses back
        geofence = parse_geofence(row.spec)
        assert (geofence.id, geofence.tenant, geofence.timezone) == (
            "centro", tenant, "Europe/Madrid")
        for definition, field in (
            ({**circle(), "id": "other"}, "id"),
            ({**circle(), "tenant": "other"}, "tenant"),
            (circle(store="nowhere"), "store"),
            ({**circle(), "store": None}, "store"),
            (circle(radius_m=-5.0), "shape.circle.radius_m"),
            ({**circle(), "dwell_after_s": "long"}, "dwell_after_s"),
            ({**circle(), "colour": "red"}, "colour"),
        ):
            with pytest.raises(PlaceError) as refused:
                put_geofence(session, tenant=tenant, geofence_id="bad", definition=definition,
                             now=T0)
            assert refused.value.field == field
        later = T0 + timedelta(minutes=5)
        moved = put_geofence(session, tenant=tenant, geofence_id="centro", now=later,
                             definition=circle(200.0, store="lisboa-01"))
        assert (moved.version, moved.created_at, moved.updated_at) == (2, T0, later)
        put_geofence(session, tenant=tenant, geofence_id="rio", definition=circle(), now=T0)
        session.commit()
    with session_scope(engine) as session:
        assert [store.key for store in list_stores(session, tenant=tenant)] == [
            "lisboa-01", "madrid-01"]
        assert store_geofence_ids(session, tenant=tenant, key="lisboa-01") == ["centro"]
        found = get_geofence(session, tenant=tenant, geofence_id="centro")
        assert found is not None
        assert found.spec["timezone"] == "Europe/Lisbon"  # a replacement: its new store's
        with pytest.raises(StoreInUseError, match="rio"):
            delete_store(session, tenant=tenant, key="madrid-01")
        assert delete_geofence(session, tenant=tenant, geofence_id="rio", now=T0) is not None
        assert delete_geofence(session, tenant=tenant, geofence_id="rio", now=T0) is None
        assert delete_store(session, tenant=tenant, key="madrid-01") is not None
        session.commit()
        assert get_store(session, tenant=tenant, key="madrid-01") is None
        assert [row.geofence_id for row in list_geofences(session, tenant=tenant)] == ["centro"]
        assert tenant_geofence_version(session, tenant=tenant) == 4
        assert tenant_geofence_version(session, tenant="another") == 0
        delete_geofence(session, tenant=tenant, geofence_id="centro", now=T0)
        session.commit()

    # each process's index (here: two StoredGeofences) follows changes made through another
    first, second = StoredGeofences(), StoredGeofences()
    inside = at_offset(*MADRID, 150.0, 0.0)

    def containing(stored: StoredGeofences) -> tuple[list[str], int]:
        with session_scope(engine) as session:
            index, version = stored.index(session, tenant=tenant)
        assert stored.version(tenant) == version
        return [g.id for g in index.containing(tenant, *inside, 5.0)], version

    assert containing(first) == ([], 5)
    with session_scope(engine) as session:
        put_store(session, tenant=tenant, key="madrid-01", data=MADRID_STORE, now=T0)
        put_geofence(session, tenant=tenant, geofence_id="centro", definition=circle(), now=T0)
        session.commit()
    assert containing(second) == ([], 6)  # 150 m out of a 100 m circle
    before = second.registry.current
    assert containing(second) == ([], 6)
    assert second.registry.current is before  # unchanged version: nothing rebuilt
    with session_scope(engine) as session:
        put_geofence(session, tenant=tenant, geofence_id="centro", definition=circle(200.0),
                     now=T0)
        session.commit()
    assert containing(first) == (["centro"], 7)
    assert containing(second) == (["centro"], 7)
    with session_scope(engine) as session:
        delete_geofence(session, tenant=tenant, geofence_id="centro", now=T0)
        session.commit()
    assert containing(second) == ([], 8)
    assert containing(first) == ([], 8)
