from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.db import session_scope
from cloud.presence.analytics import (
    FootfallRow,
    dwell_bucket,
    footfall,
    footfall_from_events,
)
from cloud.presence.crud import insert_events
from cloud.presence.rollups import rebuild_python
from shared.presence import PresenceEvent, PseudonymScope
from tests.cloud.factories import (
    START,
    bearer,
    cloud_settings,
    issue_key,
    make_event,
    wifi_pseudonym,
)

DAY = START.replace(hour=0)
Compute = Callable[..., list[FootfallRow]]


def device(n: int) -> str:
    return wifi_pseudonym(f"00:1e:c2:00:01:{n:02x}")


def seen(n: int, *, minutes: float, at: timedelta, gateway: str = "door", zone: str = "floor",
         store: str = "s1", scope: PseudonymScope = PseudonymScope.STABLE, seq: int = 0,
         tenant: str) -> PresenceEvent:
    first = DAY + at
    return make_event(tenant=tenant, pseudonym=device(n), gateway=gateway, zone=zone,
                      store=store, first_seen=first, last_seen=first + timedelta(minutes=minutes),
                      scope=scope, sequence=seq)


@pytest.fixture
def stored(engine: Engine, tenant: str) -> Engine:
    hour = timedelta(hours=10)
    events = [
        # yesterday (in the lookback): device 1 visited
        seen(1, minutes=20, at=hour - timedelta(days=1), tenant=tenant),
        # today: device 1 again (repeat), seen by two gateways in one visit
        seen(1, minutes=12, at=hour, tenant=tenant),
        seen(1, minutes=3, at=hour + timedelta(minutes=10), gateway="back", zone="tills",
             tenant=tenant),
        # device 2: new visitor, 7 minutes
        seen(2, minutes=7, at=hour, tenant=tenant),
        # devices 3 and 4: walked past
        seen(3, minutes=0.2, at=hour, tenant=tenant),
        seen(4, minutes=0.5, at=hour, tenant=tenant),
        # device 5: a randomized phone under a daily pseudonym, 40 minutes
        seen(5, minutes=40, at=hour, scope=PseudonymScope.DAILY, tenant=tenant),
        # device 2 again in the afternoon: a second visit the same day is a repeat
        seen(2, minutes=2, at=hour + timedelta(hours=5), seq=1, tenant=tenant),
        # another store
        seen(6, minutes=5, at=hour, store="s2", tenant=tenant),
    ]
    with session_scope(engine) as session:
        insert_events(session, events=events, received_at=START)
        rebuild_python(session, tenant=tenant, since=DAY.date() - timedelta(days=1),
                       until=DAY.date() + timedelta(days=1))
        session.commit()
    return engine


@pytest.mark.parametrize("compute", [footfall, footfall_from_events])
def test_store_day_figures(stored: Engine, tenant: str, compute: Compute) -> None:
    with session_scope(stored) as session:
        rows = compute(session, tenant=tenant, since=DAY, until=DAY + timedelta(days=1))
    s1 = next(row for row in rows if row.store == "s1")
    assert (s1.devices, s1.visitors, s1.passers_by) == (6, 4, 2)
    assert s1.capture_rate == pytest.approx(4 / 6, abs=1e-4)
    assert (s1.new_visitors, s1.repeat_visitors, s1.unknown_visitors) == (1, 2, 1)
    assert s1.dwell == {"<1m": 0, "1-5m": 1, "5-15m": 2, "15-30m": 0, "30-60m": 1, ">60m": 0}
    assert s1.median_dwell_s == pytest.approx((7 * 60 + 13 * 60) / 2)
    s2 = next(row for row in rows if row.store == "s2")
    assert (s2.devices, s2.visitors, s2.new_visitors) == (1, 1, 1)


def test_zone_figures_and_the_api(stored: Engine, tenant: str, migrated_url: str) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url)
    admin = bearer(issue_key(stored, tenant=tenant))
    with TestClient(create_app(settings, engine=stored), headers=admin) as client:
        url = f"/tenants/{tenant}/analytics/footfall"
        params = {"since": DAY.isoformat(), "until": (DAY + timedelta(days=1)).isoformat(),
                  "store": "s1", "by_zone": "true"}
        rows = client.get(url, params=params).json()
        later = (DAY + timedelta(days=400)).isoformat()
        too_long = client.get(url, params={**params, "until": later})
        naive = client.get(url, params={**params, "since": "2026-11-23T00:00:00"})
        three_am = (DAY + timedelta(hours=3)).isoformat()
        mid_day = client.get(url, params={**params, "since": three_am})
    tills = next(row for row in rows if row["zone"] == "tills")
    assert (tills["devices"], tills["visitors"], tills["repeat_visitors"]) == (1, 1, 1)
    assert {row["zone"] for row in rows} == {"floor", "tills"}
    assert too_long.status_code == 422
    assert too_long.json()["detail"] == [{
        "type": "value_error", "loc": ["query", "until"],
        "msg": "the window may be at most 366 days",
    }]
    assert naive.status_code == 422
    assert mid_day.status_code == 422
    assert mid_day.json()["detail"] == [{
        "type": "value_error", "loc": ["query", "since"],
        "msg": "since must be midnight UTC: footfall is kept per UTC day",
    }]


@pytest.mark.parametrize(("seconds", "bucket"), [(0, "<1m"), (59.9, "<1m"), (60, "1-5m"),
                                                  (3599, "30-60m"), (86400, ">60m")])
def test_dwell_buckets(seconds: float, bucket: str) -> None:
    assert dwell_bucket(seconds) == bucket


def at(hour: int) -> str:
    """An hour of DAY as the API writes it."""
    return (DAY + timedelta(hours=hour)).isoformat().replace("+00:00", "Z")


def test_the_hourly_route(stored: Engine, tenant: str, migrated_url: str) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url)
    admin = bearer(issue_key(stored, tenant=tenant))
    url = f"/tenants/{tenant}/analytics/footfall/hourly"
    day = {"since": DAY.isoformat(), "until": (DAY + timedelta(days=1)).isoformat()}
    with TestClient(create_app(settings, engine=stored), headers=admin) as client:
        stores = client.get(url, params={**day, "store": "s1"}).json()
        tills = client.get(url, params={**day, "store": "s1", "zone": "tills"}).json()
        half_past = client.get(url, params={**day, "since": (DAY + timedelta(minutes=30))
                                            .isoformat()})
        too_long = client.get(url, params={**day, "until": (DAY + timedelta(days=32))
                                           .isoformat()})
        bad_zone = client.get(url, params={**day, "zone": "no/such"})
    assert stores == [
        {"store": "s1", "zone": None, "hour": at(10), "devices": 5, "visitors": 3,
         "passers_by": 2, "capture_rate": 0.6},
        {"store": "s1", "zone": None, "hour": at(15), "devices": 1, "visitors": 1,
         "passers_by": 0, "capture_rate": 1.0},
    ]
    assert [(row["zone"], row["hour"], row["visitors"]) for row in tills] == [
        ("tills", at(10), 1)
    ]
    assert half_past.status_code == 422
    assert half_past.json()["detail"][0]["loc"] == ["query", "since"]
    assert "since must be a whole hour" in half_past.json()["detail"][0]["msg"]
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["msg"] == "the window may be at most 31 days"
    assert bad_zone.status_code == 422
    assert bad_zone.json()["detail"][0]["loc"] == ["query", "zone"]
