"""The first end-to-end path, with every part real and every part its own process:

recorded capture -> `vitrina-edge replay` -> Mosquitto -> `vitrina-cloud serve`
-> PostgreSQL or SQLite -> a push request at the local FCM server.

It also checks the privacy rule across the whole path: no raw MAC, beacon id or
app install id in any MQTT payload, database row or log line; and that the API keys the
shop uses (an admin key made with `vitrina-cloud keys create`, an app key the admin
issues over the API) appear in none of them either.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import sqlalchemy
from paho.mqtt.enums import CallbackAPIVersion

from demo.welcome import configure_welcome
from edge.capture.beacons import BeaconConfig
from edge.capture.replay import read_pcap_sightings
from edge.captures import (
    CAPTURES_DIR,
    DEMO_ANA_INSTALL_ID,
    DEMO_APP_IBEACON_UUID,
    DEMO_APP_SERVICE_UUID,
    JUAN_INSTALL_ID,
)
from provisioning.local_broker import LocalBroker, free_port
from sandbox.fcm import FcmSandbox, make_token
from shared.presence import decode_presence_batch
from shared.topics import TOPIC_ROOT

CAPTURE = CAPTURES_DIR / "demo.pcapng"
KEY_ID = "e2e-1"
KEY_SECRET = "5f" * 32
BIN = Path(sys.executable).parent
#: Bounds for a loaded two-core machine; they turn a hang into a failure message.
STARTUP_TIMEOUT_S = 60.0
REPLAY_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Stack:
    tenant: str
    api: str
    database_url: str
    fcm: FcmSandbox
    logs: Path
    admin_key: str
    app_key: str

    def as_app(self) -> httpx.Client:
        """What the shop's app holds: a key that can sign shoppers up, nothing more."""
        return httpx.Client(headers={"Authorization": f"Bearer {self.app_key}"}, timeout=10.0)

    def secrets(self) -> set[str]:
        return {key.split("_", 2)[2] for key in (self.admin_key, self.app_key)}


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


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def reachable(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


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


def start(command: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            command, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(params=["postgresql", "sqlite"])
def stack(
    request: pytest.FixtureRequest, broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> Iterator[Stack]:
    database_url = (
        request.getfixturevalue("postgres_url")
        if request.param == "postgresql"
        else f"sqlite:///{tmp_path / 'vitrina.db'}"
    )
    tenant = mqtt_namespace
    with FcmSandbox(project_id="vitrina-e2e") as fcm:
        credentials = fcm.write_credentials(tmp_path / "fcm-service-account.json")
        api_port = free_port()
        environment = {
            "VITRINA_DATABASE_URL": database_url,
            "VITRINA_MQTT__HOST": broker.host,
            "VITRINA_MQTT__PORT": str(broker.port),
            "VITRINA_MQTT__CLIENT_ID": f"orchestrator-{tenant}",
            # Its own share group: a stopped orchestrator's persistent session (kept for
            # restarts) would otherwise still be handed part of the next test's messages.
            "VITRINA_MQTT__SHARE_GROUP": f"orchestrator-{tenant}",
            "VITRINA_TENANTS": json.dumps(
                {tenant: {"keys": [{"key_id": KEY_ID, "secret": KEY_SECRET}]}}
            ),
            "VITRINA_CHANNELS__PUSH__PROJECT_ID": "vitrina-e2e",
            "VITRINA_CHANNELS__PUSH__CREDENTIALS_FILE": str(credentials),
            "VITRINA_CHANNELS__PUSH__ENDPOINT": fcm.url,
            "VITRINA_API__PORT": str(api_port),
            # The test runs whenever CI does: quiet hours would hold the greeting at night.
            "VITRINA_SCENARIOS": json.dumps({"quiet_hours": None}),
        }
        logs = tmp_path / "logs"
        logs.mkdir()
        migrate = subprocess.run(
            [str(BIN / "vitrina-cloud"), "migrate"],
            env={**os.environ, **environment},
            capture_output=True,
            timeout=STARTUP_TIMEOUT_S,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr.decode()
        made = subprocess.run(
            [str(BIN / "vitrina-cloud"), "keys", "create", "--tenant", tenant, "--role", "admin",
             "--name", "back office"],
            env={**os.environ, **environment},
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT_S,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        admin_key = made.stdout.strip()
        cloud = start(
            [str(BIN / "vitrina-cloud"), "serve"], env=environment, log=logs / "cloud.log"
        )
        api = f"http://127.0.0.1:{api_port}"
        try:
            wait_until(
                lambda: reachable(f"{api}/readyz"),
                timeout=STARTUP_TIMEOUT_S,
                what="orchestrator ready",
            )
            issued = httpx.post(
                f"{api}/tenants/{tenant}/api-keys",
                json={"role": "app", "name": "shop app"},
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            assert issued.status_code == 201, issued.text
            configure_welcome(api, tenant, admin_key)
            yield Stack(
                tenant=tenant, api=api, database_url=database_url, fcm=fcm, logs=logs,
                admin_key=admin_key, app_key=issued.json()["key"],
            )
        finally:
            stop(cloud)


def register(stack: Stack, *, name: str, install_id: str, location_consent: bool) -> str:
    """Sign a shopper up the way the shop's app does; return the push token."""
    base = f"{stack.api}/tenants/{stack.tenant}/customers"
    token = make_token(name)
    with stack.as_app() as client:
        created = client.post(base, json={"email": f"{name}@example.com", "first_name": name})
        assert created.status_code == 201, created.text
        customer = created.json()["id"]
        for channel, granted in (("push", True), ("location_marketing", location_consent)):
            answer = client.post(
                f"{base}/{customer}/consent",
                json={"channel": channel, "granted": granted, "source": "app.signup"},
            )
            assert answer.status_code == 201, answer.text
        for device in (
            {"kind": "fcm", "token": token},
            {"kind": "app_beacon", "install_id": install_id},
        ):
            answer = client.post(f"{base}/{customer}/devices", json=device)
            assert answer.status_code == 201, answer.text
    return token


def replay_capture(stack: Stack, broker: LocalBroker, tmp_path: Path) -> str:
    config = tmp_path / "edge.toml"
    config.write_text(
        f"""
timezone = "Europe/Madrid"
status_interval_s = 1
[identity]
tenant = "{stack.tenant}"
store = "store-1"
gateway = "gw-1"
[keys]
active = "{KEY_ID}"
[[keys.key]]
key_id = "{KEY_ID}"
secret = "{KEY_SECRET}"
[beacons]
app_ibeacon_uuid = "{DEMO_APP_IBEACON_UUID}"
app_service_uuid = "{DEMO_APP_SERVICE_UUID}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "gw-{stack.tenant}"
[outbox]
path = "{tmp_path / "outbox.db"}"
[logging]
level = "DEBUG"
"""
    )
    result = subprocess.run(
        [
            str(BIN / "vitrina-edge"),
            "replay",
            "--config",
            str(config),
            "--pcap",
            str(CAPTURE),
            "--max-speed",
        ],
        capture_output=True,
        timeout=REPLAY_TIMEOUT_S,
        check=False,
    )
    output = (result.stdout + result.stderr).decode()
    (stack.logs / "edge.log").write_text(output)
    assert result.returncode == 0, output
    return output


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
