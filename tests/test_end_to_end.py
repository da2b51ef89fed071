"""The first end-to-end path, with every part real and every part its own process:

recorded capture -> `vitrina-edge replay` -> Mosquitto -> `vitrina-cloud serve`
-> PostgreSQL or SQLite -> a push request at the local FCM server.

It also checks the privacy rule across the whole path: no raw MAC, beacon id or
app install id in any MQTT payload, database row or log line; and that the API keys the
shop uses (an admin key made with `vitrina-cloud keys create`, an app key the admin
issues over the API) appear in none of them either.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy
from paho.mqtt.enums import CallbackAPIVersion

from demo.welcome import configure_welcome
from edge.capture.beacons import BeaconConfig
from edge.capture.replay import read_pcap_sightings
from edge.captures import (
    DEMO_ANA_INSTALL_ID,
    DEMO_APP_IBEACON_UUID,
    DEMO_APP_SERVICE_UUID,
    JUAN_INSTALL_ID,
)
from provisioning.local_broker import LocalBroker
from shared.presence import decode_presence_batch
from shared.topics import TOPIC_ROOT
from tests.support.stack import (
    CAPTURE,
    Stack,
    register,
    replay_capture,
    running_stack,
    wait_until,
)


def raw_identifiers_in_capture() -> set[str]:
    """Every raw identifier the gateway can see in the capture, in the spellings that
    could leak: MACs with and without separators, beacon UUIDs, namespaces, install ids."""
    beacons = BeaconConfig(
        app_ibeacon_uuid=DEMO_APP_IBEACON_UUID, app_service_uuid=DEMO_APP_SERVICE_UUID
    )
    found = {JUAN_INSTALL_ID, DEMO_ANA_INSTALL_ID}
    for sighting in read_pcap_sightings(CAPTURE, beacons=beacons):
        kind, _, value = sighting.canonical_id.partition(":")
        if kind in {"wifi", "ble"}:
            found.update({value, value.replace(":", ""), value.replace(":", "-")})
        elif kind == "ibeacon":
            found.add(value.rsplit(":", 2)[0])
        elif kind == "eddystone":
            found.update(value.split(":"))
        else:
            found.add(value)
    return found


class PayloadRecorder:
    """An MQTT client that keeps every payload published under the tenant's topics."""

    def __init__(self, broker: LocalBroker, tenant: str) -> None:
        self.payloads: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"recorder-{tenant}", protocol=mqtt.MQTTv5
        )
        self._client.on_message = self._keep
        self._client.connect(broker.host, broker.port)
        self._client.subscribe(f"{TOPIC_ROOT}/{tenant}/#", qos=1)
        self._client.loop_start()

    def _keep(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append((message.topic, bytes(message.payload)))

    def presence_events(self) -> list[str]:
        with self._lock:
            return [
                event.event_id
                for topic, payload in self.payloads
                if topic.endswith("/presence")
                for event in decode_presence_batch(payload).events
            ]

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture(params=["postgresql", "sqlite"])
def stack(
    request: pytest.FixtureRequest, broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> Iterator[Stack]:
    database_url = (
        request.getfixturevalue("postgres_url")
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path / 'vitrina.db'}"
    )
    with running_stack(broker=broker, tenant=mqtt_namespace, database_url=database_url,
                       workdir=tmp_path) as running:
        configure_welcome(running.api, running.tenant, running.admin_key)
        yield running


def database_text(database_url: str) -> str:
    """Every row of every table, as text: what a leak into the database would look like."""
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as connection:
            tables = sqlalchemy.inspect(connection).get_table_names()
            assert {"customer", "presence_event", "message"} <= set(tables), tables
            return "\n".join(
                repr(tuple(row))
                for table in tables
                for row in connection.execute(sqlalchemy.text(f'SELECT * FROM "{table}"'))
            )
    finally:
        engine.dispose()


def test_a_consenting_shopper_seen_in_store_gets_one_push(
    stack: Stack, broker: LocalBroker, tmp_path: Path
) -> None:
    recorder = PayloadRecorder(broker, stack.tenant)
    try:
        juan = register(stack, name="juan", install_id=JUAN_INSTALL_ID, location_consent=True)
        ana = register(stack, name="ana", install_id=DEMO_ANA_INSTALL_ID, location_consent=False)

        summary = replay_capture(stack, broker, tmp_path)

        received = stack.fcm.wait_for(1, timeout_s=30.0)
        wait_until(
            lambda: len(set(recorder.presence_events())) >= 40,
            timeout=10,
            what="presence events reaching the recorder",
        )
        time.sleep(1.5)  # a wrong second push (to Ana, or a repeat) would arrive by now
    finally:
        recorder.close()

    assert [message.token for message in stack.fcm.received.snapshot()] == [juan]
    assert ana not in {message.token for message in received}
    notification = received[0].message["notification"]
    assert notification["title"] == "store-1"
    assert notification["body"] == "Welcome, juan! Good to see you."

    published = set(recorder.presence_events())
    match = re.search(r"events\s+(\d+)", summary)
    assert match is not None, summary
    assert len(published) == int(match.group(1))

    stored = database_text(stack.database_url)
    assert all(event_id in stored for event_id in published), "an event was not stored"

    leaks = raw_identifiers_in_capture()
    assert len(leaks) > 20
    texts = {
        "mqtt": "\n".join(payload.decode() for _topic, payload in recorder.payloads),
        "database": stored,
        **{path.name: path.read_text() for path in stack.logs.iterdir()},
    }
    for where, text in texts.items():
        found = sorted(value for value in leaks if value.lower() in text.lower())
        assert found == [], f"raw identifiers in {where}: {found[:5]}"
        assert not any(secret in text for secret in stack.secrets()), f"an API key in {where}"


def test_the_privacy_scan_would_notice_a_leak() -> None:
    leaks = raw_identifiers_in_capture()
    some_mac = next(
        value for value in leaks if re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", value)
    )
    text = f"device {some_mac.upper()} seen; install {JUAN_INSTALL_ID}; {uuid.uuid4()}"
    assert sorted(value for value in leaks if value.lower() in text.lower()) == sorted(
        {some_mac, JUAN_INSTALL_ID}
    )
