"""Stores, geofences and location reports over HTTP, as admins and apps use them; two app
instances on one database agreeing on geofences and on who is inside."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import col, select

from cloud.api import create_app
from cloud.auth.models import Role
from cloud.db import session_scope
from cloud.places.models import GeofencePresence, RecentFix
from cloud.triggers import Trigger
from tests.cloud.factories import (
    Clock,
    bearer,
    cloud_settings,
    customer_number,
    issue_key,
    register_shop_backend,
)
from tests.cloud.places.factories import at_offset
from tests.docs.snippets import snippet
from tests.support.shop_backend import ShopBackend

MADRID = (40.4168, -3.7038)
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
CIRCLE = {"store": "madrid-01", "dwell_after_s": 300,
          "shape": {"circle": {"lat": MADRID[0], "lon": MADRID[1], "radius_m": 100}}}


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def app_client(engine: Engine, migrated_url: str, tenant: str, clock: Clock, role: Role
               ) -> TestClient:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url)
    app = create_app(settings, engine=engine, now=clock)
    return TestClient(app, headers=bearer(issue_key(engine, tenant=tenant, role=role)))


@pytest.fixture
def admin(engine: Engine, migrated_url: str, tenant: str, clock: Clock
          ) -> Iterator[TestClient]:
    with app_client(engine, migrated_url, tenant, clock, Role.ADMIN) as client:
        yield client


def fix(east_m: float, accuracy_m: float = 5.0, **fields: object) -> dict[str, object]:
    lat, lon = at_offset(*MADRID, east_m, 0.0)
    return {"lat": lat, "lon": lon, "accuracy_m": accuracy_m, **fields}


@dataclass(frozen=True)
class Made:
    """A customer as the API names them, as the database numbers them, and the token
    headers the app sends for them."""

    id: str
    number: int
    token: dict[str, str]


@pytest.fixture
def backend(engine: Engine, tenant: str) -> ShopBackend:
    """The shop's backend, signing its customers' tokens for the app."""
    return register_shop_backend(engine, tenant=tenant)


def new_customer(client: TestClient, tenant: str, engine: Engine, backend: ShopBackend, *,
                 location: bool | None = True) -> Made:
    """A customer the back office made, who signs in to the app with `backend`'s tokens,
    and whose answer on location-based marketing is `location` (None: never asked)."""
    external_id = f"juan-{secrets.token_hex(4)}"
    response = client.post(f"/tenants/{tenant}/customers",
                           json={"first_name": "Juan", "external_id": external_id})
    assert response.status_code == 201, response.text
    made = Made(id=response.json()["id"],
                number=customer_number(engine, tenant=tenant, public_id=response.json()["id"]),
                token=backend.headers(external_id, now=NOW))
    if location is not None:
        answer(client, tenant, made.id, granted=location)
    return made


def answer(client: TestClient, tenant: str, customer: str, *, granted: bool) -> None:
    response = client.post(f"/tenants/{tenant}/customers/{customer}/consent", json={
        "channel": "location_marketing", "granted": granted, "source": "app"})
    assert response.status_code == 201, response.text


def kept_of(engine: Engine, customer: int) -> tuple[int, int, int]:
    """What is stored of the customer's location: stays, fixes for the map, and
    geofence triggers."""
    with session_scope(engine) as session:
        return (
            session.exec(select(func.count()).select_from(GeofencePresence)
                         .where(GeofencePresence.customer_id == customer)).one(),
            session.exec(select(func.count()).select_from(RecentFix)
                         .where(RecentFix.customer_id == customer)).one(),
            session.exec(select(func.count()).select_from(Trigger).where(
                Trigger.customer_id == customer,
                col(Trigger.kind).startswith("geofence."))).one(),
        )


def test_admins_manage_stores_and_geofences(admin: TestClient, tenant: str) -> None:
    base = f"/tenants/{tenant}"
    store = admin.put(f"{base}/stores/madrid-01",
                      json={"name": "Madrid Centro", "time_zone": "Europe/Madrid"})
    assert store.status_code == 200, store.text
    assert store.json()["geofences"] == []
    bad_zone = admin.put(f"{base}/stores/x", json={"name": "X", "time_zone": "Nowhere/Land"})
    assert bad_zone.status_code == 422
    assert bad_zone.json()["detail"].startswith("time_zone: ")
    assert admin.put(f"{base}/stores/Bad Key", json={"name": "X", "time_zone": "UTC"}
                     ).status_code == 422
    saved = admin.put(f"{base}/geofences/centro", json=CIRCLE)
    assert saved.status_code == 200, saved.text
    assert saved.json()["definition"]["timezone"] == "Europe/Madrid"
    assert saved.json()["version"] == 1
    bad = admin.put(f"{base}/geofences/ring",
                    json={**CIRCLE, "shape": {"circle": {"lat": 91.0, "lon": 0.0,
                                                         "radius_m": 10}}})
    assert bad.status_code == 422
    [problem] = bad.json()["detail"]
    assert problem["loc"] == ["body", "shape", "circle", "lat"]
    assert problem["msg"].startswith("must be within [-90, 90]")
    no_store = admin.put(f"{base}/geofences/ring", json={**CIRCLE, "store": "nowhere"})
    assert no_store.status_code == 422
    [problem] = no_store.json()["detail"]
    assert problem["loc"] == ["body", "store"]
    assert problem["msg"].startswith("is not a store of this tenant")
    late = admin.put(f"{base}/geofences/ring",
                     json={**CIRCLE, "hours": {"fri": [["09:30", "21:00"], ["22:00", "2:00"]]}})
    assert [problem["loc"] for problem in late.json()["detail"]] == [
        ["body", "hours", "fri", 1, 1]]
    assert admin.put(f"{base}/geofences/ring", json=[1, 2]).status_code == 422
    listed = admin.get(f"{base}/geofences").json()
    assert (listed["version"], [g["id"] for g in listed["geofences"]]) == (1, ["centro"])
    assert admin.get(f"{base}/stores/madrid-01").json()["geofences"] == ["centro"]
    assert admin.get(f"{base}/geofences/centro").json()["store"] == "madrid-01"
    in_use = admin.delete(f"{base}/stores/madrid-01")
    assert in_use.status_code == 409
    assert "centro" in in_use.json()["detail"]
    assert admin.delete(f"{base}/geofences/centro").status_code == 200
    assert admin.get(f"{base}/geofences/centro").status_code == 404
    assert admin.delete(f"{base}/geofences/centro").status_code == 404
    assert admin.get(f"{base}/geofences").json() == {"version": 2, "geofences": []}
    assert admin.delete(f"{base}/stores/madrid-01").status_code == 200
    assert admin.get(f"{base}/stores").json() == []
    assert admin.get("/tenants/unknown-tenant/stores").status_code in (403, 404)


def test_app_instances_agree_on_geofences_and_stays(
    engine: Engine, migrated_url: str, tenant: str, clock: Clock, admin: TestClient,
    backend: ShopBackend,
) -> None:
    """Two create_app on one database stand for two API processes: each has its own
    index, rebuilt when the tenant's version moves, and the stays are in the database."""
    base = f"/tenants/{tenant}"
    admin.put(f"{base}/stores/madrid-01",
              json={"name": "Madrid Centro", "time_zone": "Europe/Madrid"})
    customer = new_customer(admin, tenant, engine, backend)
    locations = f"{base}/customers/{customer.id}/locations"
    with app_client(engine, migrated_url, tenant, clock, Role.APP) as app_one, \
            app_client(engine, migrated_url, tenant, clock, Role.APP) as app_two:
        app_one.headers.update(customer.token)
        app_two.headers.update(customer.token)
        assert app_one.post(locations, json=fix(0.0)).json()["geofence_version"] == 0
        assert admin.put(f"{base}/geofences/centro", json=CIRCLE).status_code == 200
        entered = app_two.post(locations, json=fix(0.0))
        assert entered.status_code == 200, entered.text
        body = entered.json()
        assert body["geofence_version"] == 1
        assert [(t["geofence"], t["kind"]) for t in body["transitions"]] == [("centro", "enter")]
        assert body["transitions"][0]["trigger_id"] is not None
        clock.now = NOW + timedelta(seconds=30)
        # the other instance sees the same stay (no second enter) and the same version
        same = app_one.post(locations, json=fix(10.0)).json()
        assert (same["geofence_version"], same["transitions"]) == (1, [])
        assert [stay["geofence"] for stay in same["inside"]] == ["centro"]
        # a bigger circle, saved through the admin's instance, is what both now use
        bigger = {**CIRCLE, "shape": {"circle": {"lat": MADRID[0], "lon": MADRID[1],
                                                 "radius_m": 300}}}
        assert admin.put(f"{base}/geofences/centro", json=bigger).status_code == 200
        clock.now = NOW + timedelta(seconds=60)
        still = app_two.post(locations, json=fix(250.0)).json()
        assert (still["geofence_version"], still["transitions"]) == (2, [])
        clock.now = NOW + timedelta(seconds=400)
        batch = app_one.post(locations, json=[
            fix(250.0, at=(NOW + timedelta(seconds=320)).isoformat()),
            fix(1_000.0, accuracy_m=50.0),
        ]).json()
        assert [(t["kind"], t["at"][:19]) for t in batch["transitions"]] == [
            ("dwell", "2026-06-01T10:05:20"), ("exit", "2026-06-01T10:06:40")]
        assert batch["inside"] == []
        assert app_two.get(f"{base}/geofences").status_code == 403  # an app key: no admin
    with session_scope(engine) as session:
        kinds = session.exec(select(Trigger.kind).where(Trigger.customer_id == customer.number)
                             .where(Trigger.kind != "customer.signup")
                             .order_by(col(Trigger.id))).all()
    assert kinds == ["geofence.enter", "geofence.dwell", "geofence.exit"]

    customer = new_customer(admin, tenant, engine, backend)
    locations = f"{base}/customers/{customer.id}/locations"
    for body in ({"lat": 91.0, "lon": 0.0, "accuracy_m": 5.0},
                 {**fix(0.0), "accuracy_m": -1.0},
                 {**fix(0.0), "at": "2026-06-01T10:00:00"},  # naive
                 {**fix(0.0), "speed": 3},
                 [fix(0.0)] * 101, []):
        bad = admin.post(locations, json=body)
        assert bad.status_code == 422, body
        assert "91.0" not in bad.text
    assert admin.post(f"{base}/customers/999999/locations", json=fix(0.0)).status_code == 404


def test_recent_fixes_are_shown_only_for_customers_who_said_yes(
    engine: Engine, migrated_url: str, tenant: str, clock: Clock, admin: TestClient,
    backend: ShopBackend,
) -> None:
    """The app reports for three customers; the map gets the fixes of those who granted
    location-based marketing, by id only, until consent goes or a day passes."""
    base = f"/tenants/{tenant}"
    yes, unanswered, withdrawn = (new_customer(admin, tenant, engine, backend, location=location)
                                  for location in (True, None, True))
    with app_client(engine, migrated_url, tenant, clock, Role.APP) as app:
        for customer in (yes, unanswered, withdrawn):
            response = app.post(f"{base}/customers/{customer.id}/locations", json=[
                fix(0.0, at=(NOW - timedelta(minutes=5)).isoformat()), fix(20.0)],
                headers=customer.token)
            assert response.status_code == (403 if customer == unanswered else 200)
        assert app.get(f"{base}/locations/recent").status_code == 403  # the app: no
    shown = admin.get(f"{base}/locations/recent").json()
    assert [(row["customer_id"], row["at"][:19]) for row in shown["fixes"]] == [
        (withdrawn.id, "2026-06-01T10:00:00"), (yes.id, "2026-06-01T10:00:00"),
        (withdrawn.id, "2026-06-01T09:55:00"), (yes.id, "2026-06-01T09:55:00")]
    assert set(shown["fixes"][0]) == {"customer_id", "lat", "lon", "accuracy_m", "at"}
    assert (shown["since"][:19], shown["limit"]) == ("2026-05-31T10:00:00", 500)
    # withdrawing consent forgets the kept fixes at once
    assert admin.post(f"{base}/customers/{withdrawn.id}/consent", json={
        "channel": "location_marketing", "granted": False, "source": "app"},
    ).status_code == 201
    assert {row["customer_id"] for row in admin.get(f"{base}/locations/recent").json()[
        "fixes"]} == {yes.id}
    with session_scope(engine) as session:
        kept = session.exec(select(RecentFix.customer_id).distinct()).all()
    assert kept == [yes.number]
    # a day on, nothing is shown (the worker's retention deletes the rows)
    clock.now = NOW + timedelta(days=1, seconds=1)
    assert admin.get(f"{base}/locations/recent").json()["fixes"] == []


def test_location_is_processed_only_with_a_recorded_yes(
    engine: Engine, tenant: str, clock: Clock, admin: TestClient, backend: ShopBackend,
) -> None:
    """Silence is not consent: a customer who never answered is refused as one who said
    no, and nothing of the report is stored; a yes lets reports in; withdrawing it
    refuses them again and forgets the stays and fixes at once."""
    base = f"/tenants/{tenant}"
    admin.put(f"{base}/stores/madrid-01", json={"name": "Madrid Centro", "time_zone": "UTC"})
    assert admin.put(f"{base}/geofences/centro", json=CIRCLE).status_code == 200
    customer = new_customer(admin, tenant, engine, backend, location=None)
    locations = f"{base}/customers/{customer.id}/locations"

    never = admin.post(locations, json=[fix(0.0), fix(10.0)])
    assert never.status_code == 403
    # As docs/security.md shows it.
    assert never.json() == json.loads(
        snippet("docs/security.md", "security-location-refused").text)
    assert kept_of(engine, customer.number) == (0, 0, 0)

    answer(admin, tenant, customer.id, granted=True)
    accepted = admin.post(locations, json=fix(0.0))
    assert accepted.status_code == 200, accepted.text
    assert [stay["geofence"] for stay in accepted.json()["inside"]] == ["centro"]
    assert kept_of(engine, customer.number) == (1, 1, 1)  # inside, on the map, an enter

    answer(admin, tenant, customer.id, granted=False)
    assert kept_of(engine, customer.number) == (0, 0, 1)  # forgotten; the enter stays a fact
    clock.now = NOW + timedelta(minutes=1)
    withdrawn = admin.post(locations, json=fix(0.0))
    assert withdrawn.status_code == 403
    assert withdrawn.json()["detail"]["reason"] == "location_consent_withdrawn"
    assert kept_of(engine, customer.number) == (0, 0, 1)  # nothing new: no second enter
