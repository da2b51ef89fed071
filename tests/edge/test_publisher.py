from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from edge.outbox import Outbox
from edge.publisher import MqttPublisher, splice_batch
from edge.settings import EdgeSettings
from provisioning.local_broker import (
    LocalBroker,
    free_port,
    render_plain_config,
    start_mosquitto,
    stop_process,
)
from shared.presence import (
    MAX_BATCH_EVENTS,
    PresenceBatch,
    decode_presence_batch,
    encode_presence_batch,
)
from shared.status import GatewayConfig, GatewayStatus, decode_gateway_status
from shared.topics import parse_topic
from tests.edge.mqtt import Collector, publish_retained
from tests.edge.support import make_event, make_settings, until
from tests.edge.tls import make_pki, tls_broker_config


def offline(settings: EdgeSettings) -> GatewayStatus:
    identity = settings.identity
    return GatewayStatus(
        tenant=identity.tenant,
        store=identity.store,
        gateway=identity.gateway,
        online=False,
        sent_at=datetime.now(UTC),
    )


class Harness:
    def __init__(self, settings: EdgeSettings, outbox: Outbox) -> None:
        self.configs: list[GatewayConfig] = []
        self.publisher = MqttPublisher(
            settings,
            outbox,
            on_config=self.on_config,
            offline_status=lambda: offline(settings),
        )

    def on_config(self, config: GatewayConfig) -> None:
        if config.active_key_id == "bad":
            raise KeyError("unknown key")
        self.configs.append(config)


def test_outbox_rows_are_published_in_batches_and_deleted_on_puback(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = make_settings(tenant=mqtt_namespace, mqtt_port=broker.port)
    outbox = Outbox(tmp_path / "o.db", max_events=10_000)
    events = [make_event(i, tenant=mqtt_namespace, daily=i % 3 == 0) for i in range(1200)]
    outbox.put_many(events)
    collector = Collector(broker.host, broker.port, mqtt_namespace)

    async def scenario() -> None:
        harness = Harness(settings, outbox)
        publisher = harness.publisher
        stop = asyncio.Event()
        await publisher.start()
        assert await publisher.wait_connected(5)
        pump = asyncio.create_task(publisher.pump(stop))
        assert await until(lambda: publisher.idle)
        stop.set()
        await pump
        await publisher.close(offline(settings))
        assert publisher.counters.events == 1200
        assert publisher.counters.messages == 3  # 500 + 500 + 200

    asyncio.run(scenario())
    assert outbox.depth == 0
    assert outbox.published == 1200
    assert collector.wait_for(lambda c: len(c.presence_event_ids()) == 1200)
    assert collector.presence_event_ids() == [event.event_id for event in events]
    sizes = []
    for message in collector.snapshot():
        if message.topic.endswith("/presence"):
            batch = decode_presence_batch(message.payload, topic=parse_topic(message.topic))
            sizes.append(len(batch.events))
            assert not message.retain
    assert sizes == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 200]
    collector.close()


#: Before the publisher woke on stop, the pump waited out its 0.5 s idle poll after a stop
#: (>= 0.45 s once a drain had woken it last); now it returns within milliseconds.
PROMPT_S = 0.25


def test_drained_returns_with_the_last_ack_and_the_pump_with_stop(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = make_settings(tenant=mqtt_namespace, mqtt_port=broker.port)
    outbox = Outbox(tmp_path / "o.db", max_events=10_000)

    async def scenario() -> tuple[float, float]:
        publisher = Harness(settings, outbox).publisher
        stop = asyncio.Event()
        await publisher.start()
        assert await publisher.wait_connected(5)
        pump = asyncio.create_task(publisher.pump(stop))
        await asyncio.sleep(0.1)  # the pump is idle, in its poll
        outbox.put_many([make_event(i, tenant=mqtt_namespace) for i in range(700)])
        publisher.wake()
        started = time.monotonic()
        assert await publisher.drained(10)
        drained_in = time.monotonic() - started
        assert outbox.depth == 0
        assert publisher.counters.events == 700
        stop.set()
        started = time.monotonic()
        await pump
        stopped_in = time.monotonic() - started
        await publisher.close(offline(settings))
        return drained_in, stopped_in

    drained_in, stopped_in = asyncio.run(scenario())
    assert drained_in < 5  # publishing 700 events included: only that it returns
    assert stopped_in < PROMPT_S


def test_drained_gives_up_at_its_deadline_or_when_interrupted(tmp_path: Path) -> None:
    settings = make_settings(tenant="t", mqtt_port=free_port())  # nobody listens there
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    outbox.put_many([make_event(0, tenant="t")])

    async def scenario() -> tuple[bool, bool, float]:
        publisher = Harness(settings, outbox).publisher
        timed_out = await publisher.drained(0.05)
        interrupt = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, interrupt.set)
        started = time.monotonic()
        interrupted = await publisher.drained(10, interrupt)
        return timed_out, interrupted, time.monotonic() - started

    timed_out, interrupted, waited = asyncio.run(scenario())
    assert (timed_out, interrupted) == (False, False)
    assert waited < PROMPT_S
    assert outbox.depth == 1


def test_close_leaves_a_retained_offline_status(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = make_settings(tenant=mqtt_namespace, mqtt_port=broker.port)
    outbox = Outbox(tmp_path / "o.db", max_events=100)

    async def scenario() -> None:
        publisher = Harness(settings, outbox).publisher
        await publisher.start()
        assert await publisher.wait_connected(5)
        online = offline(settings).model_copy(update={"online": True, "queue_depth": 7})
        publisher.publish_status(online)
        await asyncio.sleep(0.2)
        await publisher.close(offline(settings))

    asyncio.run(scenario())
    late = Collector(broker.host, broker.port, mqtt_namespace)  # sees only retained messages
    assert late.wait_for(lambda c: any(m.topic.endswith("/status") for m in c.snapshot()))
    statuses = [m for m in late.snapshot() if m.topic.endswith("/status")]
    assert len(statuses) == 1
    assert statuses[0].retain
    assert decode_gateway_status(statuses[0].payload).online is False
    late.close()


def test_retained_config_is_applied_and_bad_ones_are_rejected(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = make_settings(tenant=mqtt_namespace, mqtt_port=broker.port)
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    config_topic = f"vitrina/v1/{mqtt_namespace}/store-1/gw-1/config"
    good = GatewayConfig(exit_after_s=45, active_key_id="k2").model_dump_json().encode()
    publish_retained(broker.host, broker.port, config_topic, good)

    async def scenario() -> None:
        harness = Harness(settings, outbox)
        publisher = harness.publisher
        await publisher.start()
        assert await until(lambda: len(harness.configs) == 1)
        assert harness.configs[0].exit_after_s == 45
        for payload in (
            b"not json",
            json.dumps({"schema_version": "2.0"}).encode(),
            json.dumps({"schema_version": "1.0", "enter_sightings": 0}).encode(),
            GatewayConfig(active_key_id="bad").model_dump_json().encode(),
        ):
            await asyncio.to_thread(
                publish_retained, broker.host, broker.port, config_topic, payload
            )
        assert await until(lambda: publisher.counters.configs_rejected == 4)
        assert publisher.counters.configs_applied == 1
        await publisher.close(offline(settings))

    asyncio.run(scenario())


def test_initial_connect_retries_until_the_broker_is_up(
    mqtt_namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(tenant=mqtt_namespace, mqtt_port=port)
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    outbox.put_many([make_event(i, tenant=mqtt_namespace) for i in range(3)])
    workdir = tmp_path / "broker"
    workdir.mkdir()

    async def scenario() -> None:
        publisher = Harness(settings, outbox).publisher
        stop = asyncio.Event()
        connecting = asyncio.create_task(publisher.start())
        pump = asyncio.create_task(publisher.pump(stop))
        await asyncio.sleep(1.0)
        assert not connecting.done()
        _, process = await asyncio.to_thread(start_mosquitto, workdir=workdir, port=port)
        try:
            await asyncio.wait_for(connecting, 10)
            assert await until(lambda: publisher.idle)
            stop.set()
            await pump
            await publisher.close(offline(settings))
        finally:
            stop_process(process)

    asyncio.run(scenario())
    assert outbox.published == 3


def test_spliced_batches_are_exactly_what_the_contract_encodes() -> None:
    settings = make_settings()
    events = [make_event(i, daily=i % 2 == 0) for i in range(7)]
    sent_at = datetime(2024, 3, 2, 10, 0, 0, 123456, tzinfo=UTC)
    spliced = splice_batch(settings.identity, sent_at, [e.model_dump_json() for e in events])
    expected = encode_presence_batch(
        PresenceBatch(
            tenant="demo",
            store="store-1",
            gateway="gw-1",
            sent_at=sent_at,
            events=events,
        )
    )
    assert spliced == expected
    assert decode_presence_batch(spliced).events == events


def test_a_damaged_outbox_row_is_removed_and_counted_not_published(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = make_settings(tenant=mqtt_namespace, mqtt_port=broker.port)
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    good = [make_event(i, tenant=mqtt_namespace) for i in range(3)]
    outbox.put_many(good[:2])
    with sqlite3.connect(tmp_path / "o.db") as db:
        db.execute(
            "INSERT INTO events (event_id, anonymous, created, body) "
            "VALUES ('x', 0, 0, '{\"event_id\":\"0123')"
        )
    outbox.close()
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    outbox.put_many(good[2:])
    collector = Collector(broker.host, broker.port, mqtt_namespace)

    async def scenario() -> MqttPublisher:
        publisher = Harness(settings, outbox).publisher
        stop = asyncio.Event()
        await publisher.start()
        pump = asyncio.create_task(publisher.pump(stop))
        assert await until(lambda: publisher.idle)
        stop.set()
        await pump
        await publisher.close(offline(settings))
        return publisher

    publisher = asyncio.run(scenario())
    assert publisher.counters.corrupt_rows == 1
    assert collector.wait_for(lambda c: len(c.presence_event_ids()) == 3)
    assert collector.presence_event_ids() == [event.event_id for event in good]
    collector.close()


def test_tls_with_client_certificate_and_password(mqtt_namespace: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    port, text = tls_broker_config(tmp_path / "pki", username="gw-1", password="s3cret-gw")
    _, process = start_mosquitto(workdir=tmp_path / "pki", port=port, config_text=text)
    tls = {"host": "127.0.0.1", "port": port, "ca_file": str(pki.ca),
           "cert_file": str(pki.client_cert), "key_file": str(pki.client_key),
           "username": "gw-1", "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}

    async def publish_with(password: str, outbox: Outbox) -> MqttPublisher:
        settings = make_settings(tenant=mqtt_namespace, mqtt={**tls, "password": password})
        publisher = Harness(settings, outbox).publisher
        stop = asyncio.Event()
        await publisher.start()
        pump = asyncio.create_task(publisher.pump(stop))
        await until(lambda: publisher.idle, 1.5)
        stop.set()
        await pump
        await publisher.close(offline(settings))
        return publisher

    try:
        refused = Outbox(tmp_path / "refused.db", max_events=10)
        refused.put_many([make_event(1, tenant=mqtt_namespace)])
        assert asyncio.run(publish_with("wrong", refused)).counters.connects == 0
        assert refused.depth == 1  # kept for when the credentials are fixed
        accepted = Outbox(tmp_path / "accepted.db", max_events=10)
        accepted.put_many([make_event(1, tenant=mqtt_namespace)])
        assert asyncio.run(publish_with("s3cret-gw", accepted)).counters.connects == 1
        assert accepted.depth == 0
    finally:
        stop_process(process)


def test_a_message_the_broker_refuses_stays_in_the_outbox(
    mqtt_namespace: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "acl"
    workdir.mkdir()
    acl = workdir / "acl"
    acl.write_text("topic readwrite vitrina/v1/+/+/+/status\ntopic read vitrina/v1/+/+/+/config\n")
    port = free_port()
    text = render_plain_config(port=port, workdir=workdir, extra=f"acl_file {acl}")
    _, process = start_mosquitto(workdir=workdir, port=port, config_text=text)
    settings = make_settings(tenant=mqtt_namespace, mqtt_port=port)
    outbox = Outbox(tmp_path / "o.db", max_events=100)
    outbox.put_many([make_event(i, tenant=mqtt_namespace) for i in range(3)])

    async def scenario() -> MqttPublisher:
        publisher = Harness(settings, outbox).publisher
        stop = asyncio.Event()
        await publisher.start()
        pump = asyncio.create_task(publisher.pump(stop))
        assert await until(lambda: publisher.counters.broker_rejections == 1)
        await asyncio.sleep(0.3)  # paused: no second attempt straight away
        stop.set()
        await pump
        await publisher.close(offline(settings))
        return publisher

    try:
        publisher = asyncio.run(scenario())
    finally:
        stop_process(process)
    assert publisher.counters.broker_rejections == 1
    assert publisher.counters.events == 0
    assert outbox.depth == 3
    assert outbox.unclaimed == 3  # handed out again once the pause is over
