"""The two promises of the outbox, end to end with the real command and real brokers:

1. the broker goes away for half a minute in the middle of a replay and comes back:
   every event still arrives;
2. the agent is killed with SIGKILL in the middle of a replay: every event that had
   reached the outbox is published after a restart, in order.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from edge.captures import BUSY_STORE_CAPTURE
from edge.outbox import read_stats
from edge.settings import load_settings
from provisioning.local_broker import LocalBroker, free_port, start_mosquitto, stop_process
from shared.status import decode_gateway_status
from tests.edge.cli import expected_event_ids, start_cli, write_config
from tests.edge.mqtt import Collector

#: The issue asks for about half a minute without a broker.
OUTAGE_S = 30.0
#: Busy-store is 30 minutes long: 60x plays it in 30 s, so the outage covers most of it.
REPLAY_SPEED = "60"
#: Batches in flight when the broker vanished may be delivered twice (QoS 1 is
#: at-least-once); the consumer deduplicates by event id. Bounded by the in-flight window.
MAX_REDELIVERED_EVENTS = 16 * 500


@pytest.mark.slow
def test_broker_outage_mid_replay_loses_nothing(mqtt_namespace: str, tmp_path: Path) -> None:
    port = free_port()
    workdir = tmp_path / "broker"
    workdir.mkdir()
    _, process = start_mosquitto(workdir=workdir, port=port)
    collector = None
    try:
        config = write_config(tmp_path, tenant=mqtt_namespace, port=port)
        expected = expected_event_ids(load_settings(config), [BUSY_STORE_CAPTURE])
        collector = Collector("127.0.0.1", port, mqtt_namespace, session=True)
        agent = start_cli("replay", "--config", config, "--pcap", BUSY_STORE_CAPTURE,
                          "--speed", REPLAY_SPEED, "--drain-timeout", "60", "--quiet",
                          stderr=tmp_path / "agent.log")
        assert collector.wait_for(lambda c: len(c.presence_event_ids()) > 0, 20)
        stop_process(process)
        before_outage = len(collector.presence_event_ids())
        time.sleep(OUTAGE_S / 2)
        queued_midway = read_stats(tmp_path / "outbox.db")[0].depth
        time.sleep(OUTAGE_S / 2)
        queued = read_stats(tmp_path / "outbox.db")[0].depth
        _, process = start_mosquitto(workdir=workdir, port=port)
        assert agent.wait(90) == 0, (tmp_path / "agent.log").read_text()
        assert collector.wait_for(lambda c: set(c.presence_event_ids()) >= set(expected), 30)
        received = collector.presence_event_ids()
    finally:
        if collector is not None:
            collector.close()
        stop_process(process)
    assert 0 < before_outage < len(expected)
    assert 0 < queued_midway < queued  # the replay went on into the outbox
    assert set(received) == set(expected)
    repeats = sum(count - 1 for count in Counter(received).values())
    assert repeats <= MAX_REDELIVERED_EVENTS
    assert "lost the broker; events wait in the outbox" in (tmp_path / "agent.log").read_text()


@pytest.mark.slow
def test_sigkill_mid_replay_loses_nothing_that_reached_the_outbox(
    broker: LocalBroker, mqtt_namespace: str, tmp_path: Path
) -> None:
    # First life: no broker at all, so every event stays in the outbox; killed mid-replay.
    config = write_config(tmp_path, tenant=mqtt_namespace, port=free_port())
    expected = expected_event_ids(load_settings(config), [BUSY_STORE_CAPTURE])
    agent = start_cli("replay", "--config", config, "--pcap", BUSY_STORE_CAPTURE,
                      "--speed", "100", "--quiet", stderr=tmp_path / "first.log")
    outbox = tmp_path / "outbox.db"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if outbox.exists() and read_stats(outbox)[0].depth >= 100:
            break
        time.sleep(0.1)
    agent.kill()
    agent.wait(10)
    with sqlite3.connect(outbox) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = [row[0] for row in db.execute("SELECT event_id FROM events ORDER BY seq")]
    assert 100 <= len(stored) < len(expected)
    assert stored == expected[: len(stored)]  # committed in pipeline order, nothing missing

    # Second life: a broker, no capture source: the outbox drains, in order.
    config = write_config(tmp_path, tenant=mqtt_namespace, port=broker.port)
    collector = Collector(broker.host, broker.port, mqtt_namespace)
    restarted = start_cli("run", "--config", config, stderr=tmp_path / "second.log")
    try:
        assert collector.wait_for(lambda c: len(c.presence_event_ids()) >= len(stored), 30)
        assert collector.presence_event_ids() == stored

        def statuses() -> list[bool]:
            return [decode_gateway_status(m.payload).online for m in collector.snapshot()
                    if m.topic.endswith("/status")]

        # Killed again while online: the broker publishes the last will (retained, offline).
        assert collector.wait_for(lambda c: True in statuses(), 10)
        restarted.kill()
        restarted.wait(10)
        assert collector.wait_for(lambda c: statuses()[-1] is False, 10)
    finally:
        if restarted.poll() is None:
            restarted.kill()
        collector.close()
    assert read_stats(outbox)[0].depth == 0
