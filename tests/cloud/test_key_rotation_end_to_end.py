"""Key rotation end to end, during a live replay: a real Mosquitto with dynamic security
and TLS, PostgreSQL, the API, the ingest worker, the delivery stage's key delivery, and a
gateway enrolled by code (with its own sealing key) replaying the demo visit.

The replay is the demo capture played through the agent's real pipeline, held at two
moments while the operator acts (a timed replay would race the rotation): Juan, whose
app is registered, walks in under the old key k1; the new key k2 is listed, reaches the
gateway sealed through the broker, and Juan's app registers again (as at every launch);
k2 is activated and Juan, still in the store, is seen under k2; both pseudonyms resolve
to Juan alone. Then k1 is retired: its links go, and the gateway erases it from memory
and from its key store, and would not load it again after a restart."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.api import create_app
from cloud.customers.crud import customers_for_pseudonyms
from cloud.customers.models import IdentityLink
from cloud.db import make_engine, session_scope, utc_now
from cloud.delivery.gateway_configs import ConfigPublisher
from cloud.presence.models import PresenceEventRow
from cloud.settings import Settings, TenantSettings
from edge.agent import EdgeAgent
from edge.capture.beacons import BeaconConfig
from edge.capture.replay import read_pcap_sightings
from edge.captures import (
    DEMO_APP_IBEACON_UUID,
    DEMO_APP_SERVICE_UUID,
    DEMO_CAPTURE,
    JUAN_INSTALL_ID,
)
from edge.enrol import write_bundle, write_seal_key
from edge.keystore import GatewayKeys
from edge.settings import BeaconSettings, EdgeSettings, load_settings
from edge.sighting import Sighting
from provisioning.broker_security import BrokerFiles
from shared.identifiers import app_identifier
from shared.pseudonym import Pseudonymizer, TenantKey
from shared.sealing import new_private_key, private_key_pem, public_key_text
from shared.status import SourceHealth
from tests.cloud.conftest import postgres_copy
from tests.cloud.factories import KEY_ID, KEY_SECRET, bearer, issue_key
from tests.cloud.gateway_support import STORE, gateway_cloud_settings
from tests.cloud.running import running_loop, running_worker, wait_for

K2 = TenantKey.from_text("k2", "e7" * 32)
JUAN = app_identifier(JUAN_INSTALL_ID)
JUAN_UNDER = {KEY_ID: Pseudonymizer(TenantKey.from_text(KEY_ID, KEY_SECRET)).stable(JUAN),
              "k2": Pseudonymizer(K2).stable(JUAN)}
BEACONS = BeaconConfig(app_ibeacon_uuid=DEMO_APP_IBEACON_UUID,
                       app_service_uuid=DEMO_APP_SERVICE_UUID)


class HeldReplay:
    """The demo capture played into the pipeline up to a capture time the test moves on
    (`play_until`): a replay that waits where the test acts."""

    name = "replay"

    def __init__(self) -> None:
        self.sightings = list(read_pcap_sightings(DEMO_CAPTURE, beacons=BEACONS))
        self.start = self.sightings[0].at
        self._until = self.start - 1
        self._lock = threading.Lock()
        self.played = 0

    def play_until(self, offset_s: float) -> None:
        with self._lock:
            self._until = self.start + offset_s

    def health(self) -> SourceHealth:
        return SourceHealth(alive=True, frames=self.played, errors=0)

    async def run(self, emit: Callable[[Sighting], None], stop: asyncio.Event) -> None:
        while not stop.is_set():
            with self._lock:
                until = self._until
            while self.played < len(self.sightings) and self.sightings[self.played].at <= until:
                emit(self.sightings[self.played])
                self.played += 1
                if self.played % 256 == 0:
                    await asyncio.sleep(0)
            await asyncio.sleep(0.05)


@pytest.fixture
def postgres_engine(schema_templates: dict[str, str]) -> Iterator[tuple[str, Engine]]:
    with postgres_copy(schema_templates) as url:
        engine = make_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


def with_keys(settings: Settings, tenant: str, *keys: TenantKey) -> Settings:
    """The settings an operator restarts the orchestrator with, the tenant's keys edited."""
    listed = TenantSettings.model_validate(
        {"keys": [{"key_id": key.key_id, "secret": key.secret.hex()} for key in keys]})
    return settings.model_copy(update={"tenants": {tenant: listed}})


def juan_events(session: Session, tenant: str, key_id: str) -> list[PresenceEventRow]:
    return list(session.exec(select(PresenceEventRow).where(
        PresenceEventRow.tenant == tenant,
        PresenceEventRow.pseudonym == JUAN_UNDER[key_id])).all())


def test_keys_rotate_during_a_live_replay_and_juan_stays_one_customer(
    postgres_engine: tuple[str, Engine], tenant: str, secure_broker: BrokerFiles,
    tmp_path: Path,
) -> None:
    url, engine = postgres_engine
    before = gateway_cloud_settings(tenant=tenant, database_url=url, files=secure_broker)
    after = with_keys(before, tenant, TenantKey.from_text(KEY_ID, KEY_SECRET), K2)
    headers = bearer(issue_key(engine, tenant=tenant))
    base = f"/tenants/{tenant}"

    with TestClient(create_app(before, engine=engine)) as api:
        api.put(f"{base}/stores/{STORE}", json={"name": "Madrid", "time_zone": "Europe/Madrid"},
                headers=headers).raise_for_status()
        code = api.post(f"{base}/stores/{STORE}/gateways", json={"gateway": "gw-1"},
                        headers=headers).json()["code"]
        # the device: its own key pair, the public part sent with the code
        bundle = tmp_path / "etc-vitrina"
        sealing = new_private_key()
        answer = api.post("/enrol", json={"code": code, "directory": str(bundle),
                                          "seal_public_key": public_key_text(sealing)})
        assert answer.status_code == 200, answer.text
        write_seal_key(bundle, private_key_pem(sealing))
        config = write_bundle(bundle, answer.json()["files"])
        juan = api.post(f"{base}/customers", json={"first_name": "Juan"}, headers=headers)
        juan_id = juan.json()["id"]
        beacon = {"kind": "app_beacon", "install_id": JUAN_INSTALL_ID}
        device = api.post(f"{base}/customers/{juan_id}/devices", json=beacon, headers=headers)
        assert device.json()["pseudonym_key_ids"] == [KEY_ID]

    agent_settings = gateway_settings(config, tmp_path)
    replay = HeldReplay()
    agent = EdgeAgent(agent_settings, [replay], live=True, wall_clock=False)
    with running_worker(before, engine), running_loop(agent.run, name="gateway"):
        wait_for(lambda: agent.publisher.connected, what="the gateway connected")
        replay.play_until(90)  # Juan walks in and browses
        with session_scope(engine) as session:
            wait_for(lambda: juan_events(session, tenant, KEY_ID), what="Juan under k1")

        # The operator lists k2 and restarts the orchestrator with it.
        with TestClient(create_app(after, engine=engine)) as api:
            wait_for(lambda: gateway_view(api, base, headers)["live"], what="a heartbeat")
            early = api.post(f"{base}/pseudonym-keys/k2/activate", headers=headers)
            assert early.status_code == 409, early.text  # the gateway does not hold k2
            assert "gw-1" in early.json()["detail"]
            delivery = ConfigPublisher(engine=engine, settings=after)
            assert delivery.deliver_keys(utc_now()) == 1
            assert delivery.run_once(utc_now()) == 1
            wait_for(lambda: "k2" in agent.pseudonymizer.key_ids, what="k2 delivered")

            def holding(key_id: str) -> Any:
                view = api.get(f"{base}/pseudonym-keys", headers=headers).json()
                [key] = [key for key in view["keys"] if key["key_id"] == key_id]
                return key["live_gateways_holding"] == 1 and view
            view = wait_for(lambda: holding("k2"), what="the heartbeat listing k2")
            assert view["active_key_id"] == KEY_ID
            again = api.post(f"{base}/customers/{juan_id}/devices", json=beacon, headers=headers)
            assert again.json()["id"] == device.json()["id"]
            assert again.json()["pseudonym_key_ids"] == [KEY_ID, "k2"]

            by_hand = api.put(f"{base}/stores/{STORE}/gateways/gw-1/config", headers=headers,
                              json={"keys": ["v1.k2.AAAA.AAAA"]})
            assert by_hand.status_code == 422
            assert "keys are not set by hand" in by_hand.json()["detail"]
            switched = api.post(f"{base}/pseudonym-keys/k2/activate", headers=headers)
            assert switched.status_code == 200, switched.text
            assert switched.json()["active_key_id"] == "k2"
            wait_for(lambda: gateway_view(api, base, headers)["active_key_id"] == "k2",
                     what="the gateway's heartbeat reporting k2 active")
            replay.play_until(300)  # Juan, still in the store, and on to the end
            with session_scope(engine) as session:
                wait_for(lambda: juan_events(session, tenant, "k2"), what="Juan under k2")
                owners = customers_for_pseudonyms(session, tenant=tenant,
                                                  pseudonyms=JUAN_UNDER.values())
                assert set(owners) == set(JUAN_UNDER.values())
                assert len(set(owners.values())) == 1  # one customer: Juan
                first_k2 = min(event.first_seen for event in juan_events(session, tenant, "k2"))
                assert max(event.first_seen for event in juan_events(session, tenant, KEY_ID)
                           if event.transition == "enter") < first_k2

            retired = api.post(f"{base}/pseudonym-keys/{KEY_ID}/retire", headers=headers)
            assert retired.status_code == 200, retired.text
            assert "1 identity link(s) deleted" in retired.json()["outcome"]
            wait_for(lambda: gateway_view(api, base, headers)["key_ids"] == ["k2"],
                     what="the gateway's heartbeat without k1")
        assert agent.pseudonymizer.key_ids == {"k2"}
        with session_scope(engine) as session:
            links = session.exec(select(IdentityLink.key_id).where(
                col(IdentityLink.tenant) == tenant)).all()
            assert links == ["k2"]
            assert customers_for_pseudonyms(session, tenant=tenant,
                                            pseudonyms=[JUAN_UNDER[KEY_ID]]) == {}
    store = agent_settings.key_store_path.read_text()
    assert "v1.k1." not in store
    assert K2.secret.hex() not in store
    restarted = GatewayKeys(agent_settings)  # the file still names k1: never loaded again
    assert (sorted(restarted.ring.keys), restarted.ring.active) == (["k2"], "k2")


def gateway_settings(config: Path, tmp_path: Path) -> EdgeSettings:
    """The enrolled bundle as the installer completes it: the shop app's beacons, and the
    agent's state (outbox, key store) in a directory of its own."""
    settings = load_settings(config, env={})
    (tmp_path / "state").mkdir()
    return settings.model_copy(update={
        "beacons": BeaconSettings(app_ibeacon_uuid=DEMO_APP_IBEACON_UUID,
                                  app_service_uuid=DEMO_APP_SERVICE_UUID),
        "outbox": settings.outbox.model_copy(update={"path": tmp_path / "state" / "outbox.db"}),
        "status_interval_s": 2.0,
    })


def gateway_view(api: TestClient, base: str, headers: dict[str, str]) -> dict[str, Any]:
    view = api.get(f"{base}/pseudonym-keys", headers=headers).json()
    [gateway] = view["gateways"]
    found: dict[str, Any] = gateway
    return found
