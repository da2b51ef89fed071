"""Retiring an ingest worker for good: the broker stops routing to its session, and the
share it held is stored, not lost (real Mosquitto, shared subscription, MQTT v5)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine

from cloud.ingest.consumer import PresenceConsumer
from cloud.settings import Settings
from provisioning.local_broker import LocalBroker
from tests.cloud.factories import batch_payload, cloud_settings, many_events, presence_topic
from tests.cloud.ingest.test_consumer_resilience import stored
from tests.cloud.running import WAIT_S, publish_all, publisher, running_worker, wait_for
from tests.cloud.test_cli import environment

PER_MESSAGE = 10
#: The workers' session expiry in these tests (`cloud_settings`).
SESSION_EXPIRY_S = 300


def messages(tenant: str, count: int, offset: int) -> list[tuple[str, bytes]]:
    events = many_events(tenant=tenant, count=count * PER_MESSAGE, offset=offset)
    return [(presence_topic(tenant), batch_payload(events[i : i + PER_MESSAGE]))
            for i in range(0, len(events), PER_MESSAGE)]


def session_present(broker: LocalBroker, client_id: str) -> bool:
    """Whether the broker still holds a session for `client_id` (connecting as it without
    a clean start, then leaving with the session as it was: what the broker sends the
    probe is never acknowledged, so it stays queued)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
    present: list[bool] = []
    client.on_connect = lambda _c, _u, flags, _rc, _p: present.append(flags.session_present)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    # As the workers ask (a zero here would end the session at the probe's disconnect).
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    properties.ReceiveMaximum = 1
    client.connect(broker.host, broker.port, clean_start=False, properties=properties)
    client.loop_start()
    try:
        wait_for(lambda: present, what="connected")
    finally:
        leave = None
        if not (present and present[0]):  # the probe made a session: leave none behind
            leave = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            leave.SessionExpiryInterval = 0
        client.disconnect(properties=leave)
        client.loop_stop()
    return present[0]


def retire(settings: Settings, engine: Engine, client_id: str) -> PresenceConsumer:
    """What `vitrina-cloud worker --client-id ID --retire` does: resume the session,
    store what it holds, end it; returns when done."""
    async def go() -> PresenceConsumer:
        retiring = asyncio.Event()
        retiring.set()
        consumer = PresenceConsumer(settings=settings, engine=engine, client_id=client_id,
                                    retire=retiring)
        await asyncio.wait_for(consumer.run(asyncio.Event()), WAIT_S)
        return consumer

    return asyncio.run(go())


def test_a_retired_session_gets_no_share_and_its_queued_share_is_stored(
    broker: LocalBroker, engine: Engine, tenant: str, migrated_url: str
) -> None:
    settings = cloud_settings(tenant=tenant, database_url=migrated_url, broker=broker)
    gone, stays = f"{tenant}-gone", f"{tenant}-stays"
    first, second = messages(tenant, 40, 0), messages(tenant, 40, 10_000)
    with running_worker(settings, engine, client_id=stays) as survivor:
        # A worker that stopped without retiring keeps its session, and with it a share
        # of the stream the broker queues for it while it is away.
        with running_worker(settings, engine, client_id=gone, end_session=False):
            pass
        with publisher(broker) as client:
            publish_all(client, first)
        wait_for(lambda: survivor.totals.events_new > 0, what="the survivor's share")
        assert session_present(broker, gone)
        assert stored(engine) < len(first) * PER_MESSAGE, "the away session got no share"

        retired = retire(settings, engine, gone)
        assert retired.totals.events_new > 0  # its queued share, stored on retiring
        assert stored(engine) == len(first) * PER_MESSAGE
        assert not session_present(broker, gone)

        before = survivor.totals.events_new
        with publisher(broker) as client:
            publish_all(client, second)
        wait_for(lambda: survivor.totals.events_new - before == len(second) * PER_MESSAGE,
                 what="every later message routed to the remaining worker")
    assert stored(engine) == (len(first) + len(second)) * PER_MESSAGE


def test_sigusr1_retires_a_running_worker_process(
    broker: LocalBroker, tenant: str, migrated_url: str, tmp_path: Path
) -> None:
    env = environment(database_url=migrated_url, tenant=tenant, broker=broker)
    env["VITRINA_MQTT__SESSION_EXPIRY_S"] = "300"
    client_id = env["VITRINA_MQTT__CLIENT_ID"]
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", "from cloud.cli import main; main()", "worker",
             "--verbose"], env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"connected to the broker" in log.read_bytes(), what="worker up")
        process.send_signal(signal.SIGUSR1)
        assert process.wait(timeout=WAIT_S) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert b"retired: ending the broker session" in log.read_bytes()
    assert not session_present(broker, client_id)
