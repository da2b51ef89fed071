"""The two promises of the outbox, end to end with the real command and real brokers:

1. the broker goes away in the middle of a replay and comes back while the replay goes
   on: every event still arrives;
2. the agent is killed with SIGKILL in the middle of a replay: every event that had
   reached the outbox is published after a restart, in order.

Each waits for what it can observe (events received, the outbox's depth, the agent's
log), with a deadline, rather than for a fixed time.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.captures import BUSY_STORE_CAPTURE
from edge.outbox import read_stats
from edge.settings import load_settings
from provisioning.local_broker import LocalBroker, free_port, start_mosquitto, stop_process
from shared.status import decode_gateway_status
from tests.edge.cli import expected_event_ids, start_cli, write_config
from tests.edge.mqtt import Collector

#: Busy-store is 30 minutes long, its events spread over it: 200x plays it in 9 s, about
#: 100 events a second, so the outage below ends well before the replay does.
REPLAY_SPEED = "200"
#: Events the replay must put in the outbox while the broker is away: batches of them
#: wait there, not just the one in hand when the connection dropped.
QUEUED_IN_OUTAGE = 150
#: Bound on each wait; a healthy run takes a fraction of it.
WAIT_S = 30.0
#: Batches in flight when the broker vanished may be delivered twice (QoS 1 is
#: at-least-once); the consumer deduplicates by event id. Bounded by the in-flight window.
MAX_REDELIVERED_EVENTS = 16 * 500


def eventually(condition: Callable[[], bool], within_s: float = WAIT_S) -> bool:
    """Whether `condition` holds within `within_s`, checked every 20 ms."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def outbox_depth(path: Path) -> int:
    """Events in the agent's outbox; 0 until the agent has made the file and its tables."""
    try:
        return read_stats(path)[0].depth
    except sqlite3.OperationalError:  # no file yet, or no table in it yet
        return 0


@pytest.mark.slow
def test_broker_outage_mid_replay_loses_nothing(mqtt_namespace: str, tmp_path: Path) -> None:
    port = free_port()
    workdir = tmp_path / "broker"
    workdir.mkdir()
    _, process = start_mosquitto(workdir=workdir, port=port)
    collector = None
    log = tmp_path / "agent.log"
    outbox = tmp_path / "outbox.db"
    try:
        config = write_config(tmp_path, tenant=mqtt_namespace, port=port)
        expected = expected_event_ids(load_settings(config), [BUSY_STORE_CAPTURE])
        collector = Collector("127.0.0.1", port, mqtt_namespace, session=True)
        agent = start_cli("replay", "--config", config, "--pcap", BUSY_STORE_CAPTURE,
                          "--speed", REPLAY_SPEED, "--drain-timeout", "60", "--quiet",
                          stderr=log)
        assert collector.wait_for(lambda c: len(c.presence_event_ids()) > 0, WAIT_S)
        stop_process(process)
        before_outage = len(collector.presence_event_ids())
        # The agent notices, and the replay goes on into the outbox meanwhile.
        assert eventually(lambda: "lost the broker" in log.read_text()), log.read_text()
        assert eventually(lambda: outbox_depth(outbox) >= QUEUED_IN_OUTAGE), log.read_text()
        queued = outbox_depth(outbox)
        replaying_on = agent.poll() is None  # the outage ends before the replay does
        _, process = start_mosquitto(workdir=workdir, port=port)
        assert agent.wait(90) == 0, log.read_text()
        assert collector.wait_for(lambda c: set(c.presence_event_ids()) >= set(expected),
                                  WAIT_S)
        received = collector.presence_event_ids()
    finally:
        if collector is not None:
            collector.close()
        stop_process(process)
    assert 0 < before_outage < len(expected)
    assert replaying_on
    assert before_outage + queued < len(expected)  # events still to come after the outage
    assert set(received) == set(expected)
    repeats = sum(count - 1 for count in Counter(received).values())
    assert repeats <= MAX_REDELIVERED_EVENTS
    assert "lost the broker; events wait in the outbox" in log.read_text()


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
    assert eventually(lambda: outbox_depth(outbox) >= 100)
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
