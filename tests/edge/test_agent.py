from __future__ import annotations

import asyncio
import time
from pathlib import Path

from edge.agent import EdgeAgent
from edge.capture.replay import PcapReplaySource
from edge.captures import BUSY_STORE_CAPTURE
from edge.health import board_temperature
from edge.outbox import read_stats
from edge.settings import EdgeSettings
from edge.sighting import Sighting
from provisioning.local_broker import LocalBroker
from shared.identifiers import IdentifierKind, wifi_identifier
from shared.occupancy import decode_occupancy_report
from shared.presence import Transition, decode_presence_batch
from shared.status import GatewayConfig, decode_gateway_status
from shared.topics import parse_topic
from tests.edge.mqtt import Collector, publish_retained
from tests.edge.support import ListSource, crowd, make_settings, replay_demo_timed, until


def agent_settings(
    broker: LocalBroker, tenant: str, tmp_path: Path, **extra: object
) -> EdgeSettings:
    return make_settings(tenant=tenant, mqtt_port=broker.port, outbox=tmp_path / "outbox.db",
                         **extra)


def test_a_replay_publishes_every_event_once_and_drains(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    scene = crowd(60)
    settings = agent_settings(broker, mqtt_namespace, tmp_path)
    collector = Collector(broker.host, broker.port, mqtt_namespace)
    source = ListSource(scene.sightings)
    agent = EdgeAgent(settings, [source], live=False, count_devices=True)
    summary = asyncio.run(agent.run(asyncio.Event(), drain_timeout=15))
    assert summary.drained
    assert summary.sightings == len(scene.sightings)
    assert summary.frames == len(scene.sightings)
    assert summary.devices == 60
    assert summary.events == summary.published_events > 0
    assert summary.enters == summary.exits
    assert summary.queue_depth == 0
    assert summary.pipeline_errors == 0
    assert collector.wait_for(lambda c: len(c.presence_event_ids()) == summary.events)
    ids = collector.presence_event_ids()
    assert len(set(ids)) == len(ids)
    # Per device, transitions arrive in order: enter, dwells, exit.
    per_device: dict[str, list[Transition]] = {}
    for message in collector.snapshot():
        if message.topic.endswith("/presence"):
            batch = decode_presence_batch(message.payload, topic=parse_topic(message.topic))
            for event in batch.events:
                per_device.setdefault(event.pseudonym, []).append(event.transition)
    for transitions in per_device.values():
        assert transitions[0] is Transition.ENTER
        assert transitions[-1] is Transition.EXIT
    statuses = [m for m in collector.snapshot() if m.topic.endswith("/status")]
    assert decode_gateway_status(statuses[-1].payload).online is False
    stats, last_status = read_stats(settings.outbox.path)
    assert stats.depth == 0
    assert stats.published == summary.events
    assert last_status is not None
    collector.close()


def test_a_replay_publishes_a_report_of_counts_for_every_minute(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = agent_settings(broker, mqtt_namespace, tmp_path)
    collector = Collector(broker.host, broker.port, mqtt_namespace)
    source = PcapReplaySource([BUSY_STORE_CAPTURE], beacons=settings.beacons.to_config(),
                              speed=None)
    agent = EdgeAgent(settings, [source], live=False)
    summary = asyncio.run(agent.run(asyncio.Event(), drain_timeout=15))
    assert summary.drained
    assert summary.occupancy_reports == summary.published_reports > 0
    assert collector.wait_for(lambda c: len(
        [m for m in c.snapshot() if m.topic.endswith("/occupancy")]) == summary.occupancy_reports)
    reports = [decode_occupancy_report(message.payload, topic=parse_topic(message.topic))
               for message in collector.snapshot() if message.topic.endswith("/occupancy")]
    minutes = [report.window_start.timestamp() for report in reports]
    assert minutes == [minutes[0] + 60 * index for index in range(len(minutes))]
    heard = [zone for report in reports for zone in report.zones]
    assert sum(zone.frames for zone in heard) > 0
    assert max(zone.people for zone in heard) > 0
    assert sum(zone.addresses for zone in heard) >= sum(zone.scans for zone in heard) > 0
    stats, _ = read_stats(settings.outbox.path)
    assert stats.depth == 0
    collector.close()


def test_a_replay_ends_as_soon_as_the_outbox_is_drained(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    """The demo capture's events are published, acknowledged and the agent is gone well
    within 0.4 s of the capture's end: a replay used to wait out the publisher's 0.5 s
    idle poll after its drain (0.52-0.60 s a run for the demo, 0.02-0.09 s now)."""
    settings = agent_settings(broker, mqtt_namespace, tmp_path)
    _total, after_capture = replay_demo_timed(settings, drain_timeout=15)
    assert after_capture < 0.4


def test_live_ticks_report_exits_and_heartbeats_while_running(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = agent_settings(
        broker, mqtt_namespace, tmp_path,
        tracker={"enter_sightings": 2, "enter_window_s": 10, "exit_after_s": 1.0},
    )
    collector = Collector(broker.host, broker.port, mqtt_namespace)
    now = time.time()
    sightings = [
        Sighting(at=now + i * 0.01, kind=IdentifierKind.WIFI_PROBE,
                 canonical_id=wifi_identifier("00:1a:11:00:00:01"), randomized=False,
                 rssi=-50.0, source="synthetic")
        for i in range(3)
    ]
    source = ListSource(sightings, hold=True)
    has_sensor = board_temperature() is not None

    async def scenario() -> None:
        stop = asyncio.Event()
        agent = EdgeAgent(settings, [source], live=True)
        running = asyncio.create_task(agent.run(stop))

        def transitions() -> list[str]:
            return [e.split(":")[0] for e in kinds(collector)]

        assert await asyncio.to_thread(
            collector.wait_for, lambda c: transitions() == ["enter", "exit"], 10
        )
        assert agent.tracker.devices_tracked == 0
        status = [m for m in collector.snapshot() if m.topic.endswith("/status")]
        heartbeat = decode_gateway_status(status[-1].payload)
        assert heartbeat.online
        assert heartbeat.sources["synthetic"].alive
        assert heartbeat.active_key_id == "k1"
        # the device's figures (status 1.1): the frames per source, the agent's CPU and
        # memory, the outbox's disk; a temperature only where the board has a sensor
        assert heartbeat.schema_version == "1.1"
        assert heartbeat.sources["synthetic"].frames == 3
        assert heartbeat.cpu_percent is not None
        assert heartbeat.cpu_percent >= 0
        assert heartbeat.memory_bytes is not None
        assert heartbeat.memory_bytes > 10 * 2**20  # a Python process with paho and pydantic
        assert heartbeat.disk_free_bytes is not None
        assert heartbeat.disk_free_bytes > 0
        assert (heartbeat.temperature_c is not None) == has_sensor
        stop.set()
        await running

    asyncio.run(scenario())
    collector.close()


def kinds(collector: Collector) -> list[str]:
    found: list[str] = []
    for message in collector.snapshot():
        if message.topic.endswith("/presence"):
            batch = decode_presence_batch(message.payload)
            found.extend(f"{event.transition.value}:{event.zone}" for event in batch.events)
    return found


def test_cloud_config_rotates_the_key_and_moves_zones_live(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = agent_settings(broker, mqtt_namespace, tmp_path)
    config = GatewayConfig(active_key_id="k2", zones=[], enter_sightings=1)
    publish_retained(broker.host, broker.port,
                     f"vitrina/v1/{mqtt_namespace}/store-1/gw-1/config",
                     config.model_dump_json().encode())
    collector = Collector(broker.host, broker.port, mqtt_namespace)
    scene = crowd(8, seed=3)

    async def scenario() -> EdgeAgent:
        agent = EdgeAgent(settings, [], live=False)
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        assert await agent.publisher.wait_connected(5)
        assert await until(lambda: agent.publisher.counters.configs_applied == 1)
        for item in scene.sightings:
            agent.emit(item)
        stop.set()
        await running
        return agent

    agent = asyncio.run(scenario())
    assert agent.pseudonymizer.active_key_id == "k2"
    assert agent.tracker.thresholds.enter_sightings == 1
    assert collector.wait_for(lambda c: len(kinds(c)) >= 16)
    for message in collector.snapshot():
        if message.topic.endswith("/presence"):
            for event in decode_presence_batch(message.payload).events:
                assert event.key_id == "k2"
                assert event.zone == "store"  # no zones left: the default zone
    collector.close()


def test_a_loop_turns_sightings_are_processed_together_and_before_a_key_rotation(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = agent_settings(broker, mqtt_namespace, tmp_path)
    collector = Collector(broker.host, broker.port, mqtt_namespace)
    scene = crowd(6)
    half = len(scene.sightings) // 2

    async def scenario() -> tuple[EdgeAgent, int, int]:
        agent = EdgeAgent(settings, [], live=False)
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        assert await agent.publisher.wait_connected(5)
        for item in scene.sightings[:half]:
            agent.emit(item)
        waiting = agent.tracker.counters.sightings  # the loop turn has not ended yet
        agent.apply_config(GatewayConfig(active_key_id="k2"))
        before_rotation = agent.tracker.counters.sightings
        for item in scene.sightings[half:]:
            agent.emit(item)
        await asyncio.sleep(0)
        stop.set()
        await running
        return agent, waiting, before_rotation

    agent, waiting, before_rotation = asyncio.run(scenario())
    assert (waiting, before_rotation) == (0, half)
    assert agent.tracker.counters.sightings == len(scene.sightings)
    events = agent.tracker.counters.events
    assert collector.wait_for(lambda c: len(c.presence_event_ids()) == events)
    key_ids = {event.key_id for message in collector.snapshot()
               if message.topic.endswith("/presence")
               for event in decode_presence_batch(message.payload).events}
    assert key_ids == {"k1", "k2"}
    collector.close()


def test_a_malformed_sighting_is_counted_not_fatal(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = agent_settings(broker, mqtt_namespace, tmp_path)
    broken = Sighting(at=1.0, kind=IdentifierKind.WIFI_PROBE, canonical_id=None,  # type: ignore[arg-type]
                      randomized=False, rssi=-50.0, source="synthetic")
    scene = crowd(4)
    source = ListSource([broken, *scene.sightings])
    agent = EdgeAgent(settings, [source], live=False)
    summary = asyncio.run(agent.run(asyncio.Event(), drain_timeout=10))
    assert summary.pipeline_errors == 1
    assert summary.enters == 4
    assert summary.drained


def test_an_unwritable_outbox_holds_events_in_memory_until_it_recovers(
    mqtt_namespace: str, tmp_path: Path
) -> None:
    settings = make_settings(tenant=mqtt_namespace, outbox=tmp_path / "outbox.db")
    agent = EdgeAgent(settings, [], live=False)
    scene = crowd(6)
    agent.outbox._db.execute("PRAGMA query_only = ON")  # writes now fail like a read-only disk
    for item in scene.sightings:
        agent.emit(item)
    held = agent.held_events
    assert held > 0
    assert agent.outbox_errors >= 1
    assert agent.outbox.depth == 0
    agent.outbox._db.execute("PRAGMA query_only = OFF")
    agent.flush()
    assert agent.outbox.depth == held
    assert agent.held_events == 0
    agent.outbox.close()
