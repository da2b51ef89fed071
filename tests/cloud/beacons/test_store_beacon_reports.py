"""The app's store-beacon reports over HTTP: the rotating id checked against the store's
gateway config, consent, and one visit giving one journey whichever source saw it first
(the gateway's presence events through the ingest path, the app's report through the API).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import col, select

from cloud.api import create_app
from cloud.auth.models import Role
from cloud.db import session_scope
from cloud.metrics import STORE_BEACON_REPORTS_REFUSED
from cloud.presence.stays import VISIT_GAP, StoreStay
from cloud.presence.triggers import record_presence_triggers
from cloud.scenarios.catalog import Catalog, save_scenario
from cloud.scenarios.engine import process_triggers
from cloud.scenarios.models import Journey
from cloud.scenarios.run import EngineConfig
from cloud.scenarios.sending import Links
from cloud.scenarios.spec import ScenarioSpec
from cloud.settings import ScenarioSettings
from cloud.triggers import Trigger
from shared.beacon import ROTATION_PERIOD_S, advert_at, store_beacon_key
from shared.presence import Transition
from shared.pseudonym import TenantKey
from tests.cloud.factories import (
    KEY_ID,
    KEY_SECRET,
    Clock,
    app_pseudonym,
    bearer,
    cloud_settings,
    customer_number,
    issue_key,
    make_event,
    register_shop_backend,
)
from tests.docs.snippets import snippet
from tests.support.shop_backend import ShopBackend

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
STORE = "s1"
SHOP_UUID = UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
CONFIG = EngineConfig(settings=ScenarioSettings(quiet_hours=None),
                      links=Links(base_url="https://t.example", secret="s" * 32))
#: A greeting on every presence.enter, with no cooldown: only the visit rule keeps one
#: visit seen two ways from starting two journeys.
GREETING = {"key": "greet", "name": "Greet", "entry": {"event": "presence.enter",
                                                       "reentry": "always"},
            "steps": [{"id": "mark", "type": "tag", "add": ["visited"]}]}


@dataclass(frozen=True)
class Shop:
    tenant: str
    engine: Engine
    admin: TestClient
    app: TestClient
    backend: ShopBackend
    clock: Clock

    def ibeacon(self, at: datetime) -> dict[str, Any]:
        advert = advert_at(store_beacon_key(TenantKey.from_text(KEY_ID, KEY_SECRET),
                                            tenant=self.tenant, store=STORE), at.timestamp())
        return {"uuid": str(SHOP_UUID), "major": advert.major, "minor": advert.minor}

    def eid(self, at: datetime) -> dict[str, Any]:
        advert = advert_at(store_beacon_key(TenantKey.from_text(KEY_ID, KEY_SECRET),
                                            tenant=self.tenant, store=STORE), at.timestamp())
        return {"uuid": str(SHOP_UUID), "eid": advert.rotating_id.hex()}


@pytest.fixture
def shop(engine: Engine, migrated_url: str, tenant: str) -> Iterator[Shop]:
    clock = Clock(NOW)
    app = create_app(cloud_settings(tenant=tenant, database_url=migrated_url), engine=engine,
                     now=clock)
    with (TestClient(app, headers=bearer(issue_key(engine, tenant=tenant, role=Role.ADMIN)))
          as admin,
          TestClient(app, headers=bearer(issue_key(engine, tenant=tenant, role=Role.APP)))
          as as_app):
        base = f"/tenants/{tenant}/stores/{STORE}"
        assert admin.put(base, json={"name": "Centro", "time_zone": "Europe/Madrid"}
                         ).status_code == 200
        assert admin.post(f"{base}/gateways", json={"gateway": "g1"}).status_code == 201
        # The config the gateway guide shows.
        document = json.loads(snippet("docs/gateway-configuration.md",
                                      "gateway-store-beacon").text)
        assert document["beacon"]["uuid"] == str(SHOP_UUID)
        saved = admin.put(f"{base}/gateways/g1/config", json=document)
        assert saved.status_code in (200, 202), saved.text
        # The cloud names the key the beacon rotates under: the active one.
        assert saved.json()["desired"]["beacon"]["key_id"] == KEY_ID
        with session_scope(engine) as session:
            save_scenario(session, tenant=tenant, now=NOW,
                          spec=ScenarioSpec.model_validate(GREETING))
            session.commit()
        yield Shop(tenant, engine, admin, as_app, register_shop_backend(engine, tenant=tenant),
                   clock)


@dataclass(frozen=True)
class Made:
    id: str
    number: int
    token: dict[str, str]
    install_id: str


def new_customer(shop: Shop, *, location: bool | None = True) -> Made:
    external_id = f"juan-{secrets.token_hex(4)}"
    made = shop.admin.post(f"/tenants/{shop.tenant}/customers",
                           json={"first_name": "Juan", "external_id": external_id})
    assert made.status_code == 201, made.text
    public_id = made.json()["id"]
    install_id = secrets.token_hex(4)
    linked = shop.admin.post(f"/tenants/{shop.tenant}/customers/{public_id}/devices",
                             json={"kind": "app_beacon", "install_id": install_id})
    assert linked.status_code == 201, linked.text
    if location is not None:
        answered = shop.admin.post(f"/tenants/{shop.tenant}/customers/{public_id}/consent",
                                   json={"channel": "location_marketing", "granted": location,
                                         "source": "app"})
        assert answered.status_code == 201, answered.text
    return Made(public_id, customer_number(shop.engine, tenant=shop.tenant, public_id=public_id),
                shop.backend.headers(external_id, now=NOW), install_id)


def report(shop: Shop, customer: Made, body: dict[str, Any]) -> Any:
    return shop.app.post(f"/tenants/{shop.tenant}/customers/{customer.id}/store-beacon",
                         json=body, headers=customer.token)


def gateway_enter(shop: Shop, customer: Made, at: datetime) -> int:
    """The gateway's presence event of the customer's phone, through the ingest path's
    trigger step; the triggers recorded."""
    event = make_event(tenant=shop.tenant, pseudonym=app_pseudonym(customer.install_id),
                       store=STORE, transition=Transition.ENTER, first_seen=at)
    with session_scope(shop.engine) as session:
        recorded = record_presence_triggers(session, events=[event], now=at)
        session.commit()
    return recorded


def journeys(shop: Shop, customer: Made) -> int:
    with session_scope(shop.engine) as session:
        process_triggers(session, catalog=Catalog(), config=CONFIG, now=shop.clock.now,
                         limit=100)
        session.commit()
        return session.exec(select(func.count()).select_from(Journey)
                            .where(Journey.customer_id == customer.number)).one()


def enter_triggers(shop: Shop, customer: Made) -> list[dict[str, Any]]:
    with session_scope(shop.engine) as session:
        return [row.attributes for row in session.exec(
            select(Trigger).where(Trigger.customer_id == customer.number,
                                  Trigger.kind == "presence.enter")
            .order_by(col(Trigger.id)))]


def test_a_current_beacon_id_opens_a_visit_and_a_replayed_one_is_refused(
    shop: Shop, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    juan = new_customer(shop)
    entered = report(shop, juan, {"event": "enter", **shop.ibeacon(NOW), "rssi": -67,
                                  "proximity": "near"})
    assert entered.status_code == 200, entered.text
    assert entered.json()["visit"] == "opened"
    assert entered.json()["stores"] == [STORE]
    assert enter_triggers(shop, juan) == [
        {"store": STORE, "zone": None, "gateway": None, "dwell_s": 0.0}]

    # An id recorded outside the store: good for this period and the next, not later.
    recorded = shop.ibeacon(NOW)
    shop.clock.now = NOW + timedelta(seconds=ROTATION_PERIOD_S)
    assert report(shop, juan, {"event": "enter", **recorded}).status_code == 200
    refused_before = STORE_BEACON_REPORTS_REFUSED.labels(reason="beacon_not_current")._value.get()
    shop.clock.now = NOW + timedelta(seconds=2 * ROTATION_PERIOD_S)
    replayed = report(shop, juan, {"event": "enter", **recorded})
    assert replayed.status_code == 422
    assert replayed.json()["detail"]["reason"] == "beacon_not_current"
    assert STORE_BEACON_REPORTS_REFUSED.labels(
        reason="beacon_not_current")._value.get() == refused_before + 1
    # ...and the current one, as Eddystone-EID, still counts (joining the same visit).
    current = report(shop, juan, {"event": "enter", **shop.eid(shop.clock.now)})
    assert current.json()["visit"] == "joined"
    # Another shop's UUID with this store's id is no store of this shop's.
    other = {**shop.ibeacon(shop.clock.now), "uuid": str(UUID(int=1))}
    assert report(shop, juan, {"event": "enter", **other}).status_code == 422
    assert len(enter_triggers(shop, juan)) == 1
    # The ids the app sent are the store's, not the customer's, but they stay out of the
    # logs and the database all the same (they would tell where the customer was).
    sent = {shop.eid(NOW)["eid"], shop.eid(shop.clock.now)["eid"]}
    assert not any(value in caplog.text for value in sent)
    with session_scope(shop.engine) as session:
        stored = repr([*session.exec(select(Trigger)), *session.exec(select(StoreStay))])
    assert "refused" in caplog.text
    assert not any(value in stored for value in sent)


def test_an_exit_ends_the_visit_the_beacon_opened(shop: Shop) -> None:
    juan = new_customer(shop)
    assert report(shop, juan, {"event": "enter", **shop.ibeacon(NOW)}).status_code == 200
    shop.clock.now = NOW + timedelta(minutes=7)
    left = report(shop, juan, {"event": "exit", "uuid": str(SHOP_UUID)})  # iOS: no ranging
    assert left.status_code == 200, left.text
    assert (left.json()["visit"], left.json()["stores"]) == ("ended", [STORE])
    with session_scope(shop.engine) as session:
        exit_trigger = session.exec(select(Trigger).where(
            Trigger.customer_id == juan.number, Trigger.kind == "presence.exit")).one()
    assert exit_trigger.attributes["dwell_s"] == 420.0


def test_a_reports_own_time_is_held_to_the_periods_its_id_is_checked_for(shop: Shop) -> None:
    juan = new_customer(shop)
    stale = report(shop, juan, {"event": "enter", **shop.ibeacon(NOW),
                                "at": (NOW - timedelta(days=1)).isoformat()})
    assert stale.status_code == 200, stale.text
    assert stale.json()["at"] == (NOW - timedelta(seconds=2 * ROTATION_PERIOD_S)).isoformat(
        ).replace("+00:00", "Z")
    ana = new_customer(shop)
    ahead = report(shop, ana, {"event": "enter", **shop.ibeacon(NOW),
                               "at": (NOW + timedelta(hours=1)).isoformat()})
    assert ahead.json()["at"] == NOW.isoformat().replace("+00:00", "Z")


def test_without_a_yes_to_location_marketing_nothing_is_kept(shop: Shop) -> None:
    never = new_customer(shop, location=None)
    refused = report(shop, never, {"event": "enter", **shop.ibeacon(NOW)})
    assert refused.status_code == 403
    assert refused.json()["detail"]["reason"] == "location_consent_missing"
    said_no = new_customer(shop, location=False)
    assert report(shop, said_no, {"event": "enter", **shop.ibeacon(NOW)}).status_code == 403
    with session_scope(shop.engine) as session:
        assert session.exec(select(func.count()).select_from(StoreStay)).one() == 0
    assert enter_triggers(shop, never) == enter_triggers(shop, said_no) == []


def test_an_enter_needs_what_ranging_read_and_the_customer_token(shop: Shop) -> None:
    juan = new_customer(shop)
    bare = report(shop, juan, {"event": "enter", "uuid": str(SHOP_UUID)})
    assert bare.status_code == 422
    no_token = shop.app.post(f"/tenants/{shop.tenant}/customers/{juan.id}/store-beacon",
                             json={"event": "enter", **shop.ibeacon(NOW)})
    assert no_token.status_code in (401, 403)


def test_a_gateway_sighting_and_a_beacon_report_of_one_visit_give_one_journey(
    shop: Shop,
) -> None:
    # The gateway first: the app's report joins its visit.
    juan = new_customer(shop)
    assert gateway_enter(shop, juan, NOW) == 1
    joined = report(shop, juan, {"event": "enter", **shop.ibeacon(NOW + timedelta(seconds=20))})
    assert joined.json()["visit"] == "joined"
    assert journeys(shop, juan) == 1

    # The app first: the gateway's enter joins its visit.
    ana = new_customer(shop)
    assert report(shop, ana, {"event": "enter", **shop.ibeacon(NOW)}).json()["visit"] == "opened"
    assert gateway_enter(shop, ana, NOW + timedelta(seconds=40)) == 0
    assert journeys(shop, ana) == 1

    # Back after more than the gap: a new visit, a new journey.
    later = NOW + timedelta(seconds=40) + VISIT_GAP + timedelta(minutes=1)
    shop.clock.now = later
    assert report(shop, ana, {"event": "enter", **shop.ibeacon(later)}).json()["visit"] \
        == "opened"
    assert journeys(shop, ana) == 2
