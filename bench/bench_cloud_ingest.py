"""Orchestrator ingest: MQTT -> PostgreSQL, against a bare subscriber on the same stream.

Every phase runs on a Mosquitto and a PostgreSQL database of its own run, fed by the
same publisher with the same pre-encoded presence batches (enter/dwell/exit of many
devices, 250 events per message):

1. bare: a paho subscriber (MQTT v5, QoS 1, shared subscription) that only counts what
   it receives: how fast the broker and the publisher can go on this machine;
2. one worker: `vitrina-cloud worker` in its own process, storing into PostgreSQL
   (decode, COPY, scenario trigger lookups, manual acknowledgement after commit);
3. two workers: two such processes in one share group.

A phase's time runs from the first publish to the last event received (bare) or
committed (workers; polled in the database). Workers are started and connected before
the clock starts, so process start-up is not measured.

    .venv/bin/python -m bench.bench_cloud_ingest [--events N] \
        [--output docs/benchmarks/cloud-ingest.md]

Target: >= 10,000 events/s with one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from bench.processes import CLOUD_COMMAND, stop_processes
from cloud.db import migrate
from provisioning.local_broker import LocalBroker, local_broker
from shared.identifiers import IdentifierKind, wifi_identifier
from shared.presence import (
    PresenceBatch,
    PresenceEvent,
    PseudonymScope,
    Transition,
    encode_presence_batch,
    make_event_id,
)
from shared.pseudonym import Pseudonymizer, TenantKey
from shared.status import GatewayStatus
from shared.topics import TOPIC_ROOT, TopicChannel, gateway_topic
from tests.support.postgres import fresh_database

TARGET_EVENTS_PER_S = 10_000
TENANT = "bench"
KEY_SECRET = "5a" * 32
EVENTS_PER_MESSAGE = 250
STORES, GATEWAYS = 4, 2
#: A phase that has not finished by then has failed (a lost message would hang it).
PHASE_TIMEOUT_S = 600.0
POLL_S = 0.05
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    events: int
    seconds: float
    detail: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def make_stream(total: int) -> list[tuple[str, bytes]]:
    """Pre-encoded presence messages: each device enters, dwells and leaves."""
    pseudonymizer = Pseudonymizer(TenantKey.from_text("k1", KEY_SECRET))
    per_gateway: dict[tuple[str, str], list[PresenceEvent]] = {}
    device = 0
    while sum(len(events) for events in per_gateway.values()) < total:
        store, gateway = f"s{device % STORES}", f"g{device % GATEWAYS}"
        mac = f"00:1c:{(device >> 16) & 255:02x}:{(device >> 8) & 255:02x}:{device & 255:02x}:07"
        pseudonym = pseudonymizer.stable(wifi_identifier(mac))
        first = START + timedelta(seconds=device)
        for step, transition in enumerate((Transition.ENTER, Transition.DWELL, Transition.EXIT)):
            last = first + timedelta(minutes=5 * step, seconds=5)
            per_gateway.setdefault((store, gateway), []).append(PresenceEvent(
                event_id=make_event_id(
                    tenant=TENANT, store=store, gateway=gateway, pseudonym=pseudonym,
                    transition=transition, first_seen=first, sequence=step,
                ),
                tenant=TENANT, store=store, gateway=gateway, pseudonym=pseudonym, key_id="k1",
                scope=PseudonymScope.STABLE, kind=IdentifierKind.WIFI_PROBE, randomized=False,
                transition=transition, zone="floor", rssi=-65.0, first_seen=first,
                last_seen=last, dwell_s=(last - first).total_seconds(), sightings=4 + step,
            ))
        device += 1
    messages = []
    remaining = total
    for (store, gateway), events in per_gateway.items():
        events = events[:remaining]
        remaining -= len(events)
        topic = gateway_topic(TENANT, store, gateway, TopicChannel.PRESENCE)
        for start in range(0, len(events), EVENTS_PER_MESSAGE):
            chunk = events[start : start + EVENTS_PER_MESSAGE]
            batch = PresenceBatch(tenant=TENANT, store=store, gateway=gateway, sent_at=START,
                                  events=chunk)
            messages.append((topic, encode_presence_batch(batch)))
    return messages


def client(broker: LocalBroker, client_id: str = "") -> mqtt.Client:
    mqtt_client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    mqtt_client.max_queued_messages_set(0)
    mqtt_client.max_inflight_messages_set(1000)
    mqtt_client.connect(broker.host, broker.port)
    mqtt_client.loop_start()
    return mqtt_client


def publish(broker: LocalBroker, messages: Sequence[tuple[str, bytes]]) -> None:
    publisher = client(broker, "bench-publisher")
    try:
        infos = [publisher.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=PHASE_TIMEOUT_S)
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def bare_phase(broker: LocalBroker, messages: Sequence[tuple[str, bytes]], total: int) -> Result:
    received = {"messages": 0}
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received["messages"] += 1
        if received["messages"] == len(messages):
            done.set()

    subscriber = client(broker, "bench-bare")
    subscriber.on_message = on_message
    subscribed = threading.Event()
    subscriber.on_subscribe = lambda *_args: subscribed.set()
    topic = f"$share/bare/{TOPIC_ROOT}/+/+/+/presence"
    subscriber.subscribe(topic, options=SubscribeOptions(qos=1))
    subscribed.wait(10)
    started = time.monotonic()
    publish(broker, messages)
    if not done.wait(PHASE_TIMEOUT_S):
        raise RuntimeError(f"bare subscriber got {received['messages']} of {len(messages)}")
    elapsed = time.monotonic() - started
    subscriber.disconnect()
    subscriber.loop_stop()
    return Result("bare paho subscriber (counts only)", total, elapsed)


def worker_environment(broker: LocalBroker, url: str, group: str, client_id: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VITRINA_")}
    env.update({
        "VITRINA_DATABASE_URL": url,
        "VITRINA_TENANTS": json.dumps({TENANT: {"keys": [{"key_id": "k1", "secret": KEY_SECRET}]}}),
        "VITRINA_MQTT__HOST": broker.host,
        "VITRINA_MQTT__PORT": str(broker.port),
        "VITRINA_MQTT__CLIENT_ID": client_id,
        "VITRINA_MQTT__SHARE_GROUP": group,
        "VITRINA_MQTT__SESSION_EXPIRY_S": "0",
    })
    return env


def count_events(url: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        row = connection.execute("SELECT count(*) FROM presence_event").fetchone()
        return int(row[0]) if row else 0


def highest_event_row(url: str) -> int:
    """Progress probe: max(id) is one index lookup, where count(*) would scan the table on
    every poll and steal the database's CPU from the workers being measured. Each phase
    has a fresh database and no duplicates, so it equals the count (checked at the end)."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        row = connection.execute("SELECT coalesce(max(id), 0) FROM presence_event").fetchone()
        return int(row[0]) if row else 0


def count_gateways(url: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        row = connection.execute("SELECT count(*) FROM gateway").fetchone()
        return int(row[0]) if row else 0


@contextmanager
def workers(broker: LocalBroker, url: str, group: str, count: int, logs: Path) -> Iterator[None]:
    processes = []
    for index in range(count):
        log = (logs / f"{group}-{index}.log").open("wb")
        processes.append(subprocess.Popen(
            [*CLOUD_COMMAND, "worker"],
            env=worker_environment(broker, url, group, f"{group}-{index}"),
            stdout=log, stderr=subprocess.STDOUT,
        ))
        log.close()
    try:
        # Connected and subscribed once a status message (not shared: every worker gets
        # one) has been stored by all of them, one gateway id per worker.
        probe = client(broker, f"{group}-probe")
        deadline = time.monotonic() + 60
        while count_gateways(url) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not come up; see the logs in " + str(logs))
            for index in range(count):
                status = GatewayStatus(tenant=TENANT, store="probe", gateway=f"p{index}",
                                       online=True, sent_at=datetime.now(UTC))
                probe.publish(gateway_topic(TENANT, "probe", f"p{index}", TopicChannel.STATUS),
                              status.model_dump_json().encode(), qos=1)
            time.sleep(0.5)
        probe.disconnect()
        probe.loop_stop()
        yield
    finally:
        stop_processes(processes)


def worker_phase(
    broker: LocalBroker, messages: Sequence[tuple[str, bytes]], total: int, count: int,
    logs: Path,
) -> Result:
    with fresh_database("vitrina_bench") as url:
        migrate(url)
        with workers(broker, url, f"bench{count}w", count, logs):
            started = time.monotonic()
            publish(broker, messages)
            published = time.monotonic() - started
            while (stored := highest_event_row(url)) < total:
                if time.monotonic() - started > PHASE_TIMEOUT_S:
                    raise RuntimeError(f"only {stored} of {total} events stored")
                time.sleep(POLL_S)
            elapsed = time.monotonic() - started
            stored = count_events(url)
            if stored != total:
                raise RuntimeError(f"{stored} events stored for {total} published")
    noun = "worker" if count == 1 else "workers"
    return Result(f"{count} {noun} -> PostgreSQL", total, elapsed,
                  f"publishing took {published:.2f} s")


def median_result(runs: Sequence[Result]) -> Result:
    ordered = sorted(runs, key=lambda result: result.rate)
    return ordered[len(ordered) // 2]


def render(
    phases: dict[str, list[Result]], total: int, messages: int,
    load: tuple[float, float] = (0.0, 0.0),
) -> str:
    medians = {name: median_result(runs) for name, runs in phases.items()}
    bare = next(iter(medians.values()))
    rounds = len(next(iter(phases.values())))
    lines = [
        "# Orchestrator ingest: MQTT -> PostgreSQL",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), with "
        "`python -m bench.bench_cloud_ingest`.",
        "",
        f"{total:,} presence events (enter/dwell/exit of {total // 3:,} devices) in {messages} "
        f"MQTT messages of {EVENTS_PER_MESSAGE} events, QoS 1, published by one paho client "
        "to a Mosquitto started for the run. The broker, PostgreSQL, the publisher and the "
        f"workers share the machine's cores. {rounds} rounds, phases interleaved within each "
        "round; the table gives the median round and the range. One-minute load average "
        f"(other work on the machine included): {load[0]:.1f} at the start, {load[1]:.1f} "
        "at the end.",
        "",
        "| phase | events/s (median) | range | vs bare subscriber | notes |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, runs in phases.items():
        median = medians[name]
        low, high = min(r.rate for r in runs), max(r.rate for r in runs)
        lines.append(
            f"| {name} | {median.rate:,.0f} | {low:,.0f}-{high:,.0f} | "
            f"{median.rate / bare.rate:.3f} | {median.detail} |"
        )
    one = next(r for n, r in medians.items() if n.startswith("1 "))
    two = next((r for n, r in medians.items() if n.startswith("2 ")), None)
    verdict = "meets" if one.rate >= TARGET_EVENTS_PER_S else "MISSES"
    lines += [
        "",
        f"One worker {verdict} the target of {TARGET_EVENTS_PER_S:,} events/s (median).",
    ]
    if two is not None:
        lines.append(f"Two workers vs one: {two.rate / one.rate:.2f}x (medians).")
    lines += [
        "",
        "What a worker does per message: decode and validate the batch (`shared`), COPY it "
        "into a staging table and `INSERT ... ON CONFLICT DO NOTHING` into `presence_event` "
        "(unique event id, three indexes), look up which entering devices belong to "
        "customers, commit, then acknowledge (manual PUBACK). Decoding the next batch "
        "overlaps the database write of the previous one. The bare subscriber only counts "
        "messages: the ratio says how much of the broker's pace the storage path keeps, "
        "i.e. that the database write, not MQTT, is what limits ingest.",
        "",
        "The machine is shared (other suites may be running), so single runs move by a fifth "
        "or so; hence rounds and medians.",
        "",
        "On two cores the second worker competes with PostgreSQL and the broker for the same "
        "CPUs, so the 1 -> 2 figure says little about a deployment where workers have cores "
        "of their own; it does show that shared-subscription workers split the stream "
        "without losing or duplicating events (each phase checks the stored count).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    messages = make_stream(args.events)
    total = args.events
    phases: dict[str, list[Result]] = {}
    load_before = os.getloadavg()[0]
    with local_broker() as broker, tempfile.TemporaryDirectory() as logs:
        for _ in range(args.rounds):
            results = [bare_phase(broker, messages, total)]
            results += [
                worker_phase(broker, messages, total, count, Path(logs)) for count in args.workers
            ]
            for result in results:
                phases.setdefault(result.name, []).append(result)
                print(f"{result.name}: {result.rate:,.0f} events/s", flush=True)
    report = render(phases, total, len(messages), (load_before, os.getloadavg()[0]))
    print(report)
    if args.output is not None:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
