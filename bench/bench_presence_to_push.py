"""Presence-to-push latency: a presence event handed to a gateway's outbox, to the push
request arriving at the local FCM server, at a steady rate.

Every part is the real one, each in its own process as in production:
- gateways: the edge's own `Outbox` and `MqttPublisher` (in this process, one per store),
  fed `enter` events of app beacons at `--rate` events/s in total;
- a Mosquitto started for the run;
- the orchestrator's worker as deployed: a `vitrina-cloud worker --stage ...` process per
  stage (presence ingest, scenario worker, delivery worker with the FCM sender), started
  and stopped by the bench as a process manager would, waking each other through the
  database; or with `--one-process` one `vitrina-cloud worker` running all three; on a
  fresh, migrated PostgreSQL database;
- the local FCM server (`python -m sandbox.fcm`), standing in for Google.

The database holds one consenting customer per event (push and location-marketing
consent, an FCM token, the app install whose beacon the gateway sees), and the shop's
in-store greeting (`demo.welcome`: a push on `presence.enter`). So every event starts a
fresh journey and sends exactly one push, to a token that says which event it was for.

An event's latency runs from the moment it is written to its gateway's outbox (the
agent's hand-off; the time is taken just before) to the moment the FCM server records
the request (`received_at`, wall clock: the same clock on one machine). Baselines,
measured in the same run and under the same load:
- MQTT transport: a bare paho subscriber on the presence topics records when each event
  arrives (same hand-off, same outbox and publisher, same broker);
- FCM send: a thread in this process sends one push at a time through `FcmSender` (the
  delivery worker's sender) straight to the FCM server, every 50 ms, timed from the call
  to the server's record.
Their p99s added up are the floor the pipeline stands on; the ratio is measured p99 over
that floor. The stage breakdown comes from the timestamps the orchestrator itself stores
(trigger recorded and processed, message sent), so it needs no instrumentation.

    .venv/bin/python -m bench.bench_presence_to_push [--rate 500 [100 ...]] [--seconds 25] \
        [--warmup 5] [--workers 1] [--one-process] [--set ingest.batch_wait_s=0.02 ...] \
        [--output docs/benchmarks/latency.md]

Each rate runs from scratch (broker, database, FCM server, workers), one after the other.

Target: p99 < 250 ms at 500 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Engine, insert, text
from sqlmodel import SQLModel

from bench.processes import CLOUD_COMMAND, stop_processes
from cloud.channels.fcm import FcmSender, FcmSettings, PushMessage
from cloud.customers.crud import link_pseudonyms
from cloud.customers.models import AppBeaconRegistration, DeviceKind
from cloud.db import make_engine, migrate, session_scope
from cloud.scenarios.catalog import save_scenario
from cloud.scenarios.spec import ScenarioSpec
from cloud.service import Stage
from cloud.settings import Settings
from cloud.templates.crud import save_template
from cloud.templates.spec import TemplateSpec
from demo.welcome import SCENARIO, TEMPLATE_KEY, TEMPLATE_PARTS
from edge.outbox import Outbox
from edge.publisher import MqttPublisher
from edge.settings import EdgeSettings, parse_settings
from provisioning.local_broker import LocalBroker, local_broker
from shared.identifiers import IdentifierKind, canonical_identifier
from shared.presence import (
    PresenceEvent,
    PseudonymScope,
    Transition,
    decode_presence_batch,
    make_event_id,
)
from shared.pseudonym import Pseudonymizer, TenantKey
from shared.status import GatewayStatus
from shared.topics import TOPIC_ROOT
from tests.support.postgres import fresh_database

TARGET_P99_MS = 250.0
TARGET_RATE = 500
TENANT = "bench"
KEY_ID = "k1"
KEY_SECRET = "6b" * 32
PROJECT = "vitrina-latency"
ROOT = Path(__file__).resolve().parent.parent
#: Shoppers arrive at several stores at once: one gateway (outbox, publisher, MQTT
#: connection) per store, events dealt to them in turn.
STORES = 4
#: How often the feeder hands due events to the gateways. The agent flushes to its
#: outbox once per loop turn with whatever its sources produced, so events reach the
#: outbox a few at a time; each event's clock starts at its own hand-off.
TICK_S = 0.01
#: The FCM baseline's pace: enough samples for a p99, too few to load anything.
FCM_PROBE_INTERVAL_S = 0.05
#: After the last hand-off, pushes may take as long as they keep coming (a backlog drains
#: at its own pace); once none has arrived for this long, the missing ones count as lost.
DRAIN_STALL_S = 30.0
#: After everything arrived, wait this long more: a duplicate push would show up by then.
DUPLICATE_GRACE_S = 2.0
#: Start-up bound for the worker (subscribed) and the FCM server.
STARTUP_TIMEOUT_S = 60.0
#: How often the database is asked how far each stage got: fine enough to see a backlog
#: build, coarse enough to cost the database next to nothing.
SAMPLE_INTERVAL_S = 0.25
#: The page keeps what follows this line when the bench writes it again.
KEPT_MARKER = "<!-- Written by hand below; the bench keeps it when it rewrites the page. -->"
#: Settings every run uses whatever else is tuned: quiet hours off (the run must not
#: depend on the time of day: at night every greeting would be held until morning).
BASE_OVERRIDES: dict[str, Any] = {"scenarios": {"quiet_hours": None}}


# --- the shoppers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shopper:
    """One consenting customer; their app's beacon is what one event reports."""

    index: int
    install_id: str
    pseudonym: str
    token: str

    @property
    def external_id(self) -> str:
        return f"shopper-{self.index}"


def fcm_token(prefix: str, index: int) -> str:
    """A token shaped like FCM's ("<installation id>:<opaque>") that names its event."""
    return f"{prefix}{index:08d}:APA91b{'x' * 40}"


def index_of(token: str, prefix: str) -> int | None:
    if not token.startswith(prefix):
        return None
    return int(token[len(prefix) : token.index(":")])


def make_shoppers(count: int, pseudonymizer: Pseudonymizer) -> list[Shopper]:
    """The gateway's pseudonym of each app install, computed as the gateway computes it."""
    shoppers = []
    for index in range(count):
        install_id = f"install-{index:08d}"
        canonical = canonical_identifier(IdentifierKind.BLE_APP, install_id)
        shoppers.append(Shopper(index, install_id, pseudonymizer.stable(canonical),
                                fcm_token("shopper", index)))
    return shoppers


def seed(engine: Engine, shoppers: Sequence[Shopper], pseudonymizer: Pseudonymizer) -> None:
    """Customers with push and location-marketing consent, an FCM token and their app
    install linked (as the app's registration would leave them), plus the greeting.

    Written in bulk: the registration API would take minutes for this many customers and
    is not what is measured. The links are made by the registration's own function."""
    now = datetime.now(UTC)
    tables = SQLModel.metadata.tables
    customer, consent, device, link = (
        tables["customer"], tables["consent"], tables["device"], tables["identity_link"]
    )
    with engine.begin() as connection:
        rows = connection.execute(
            insert(customer).returning(customer.c.id, sort_by_parameter_order=True),
            [{"tenant": TENANT, "external_id": s.external_id, "first_name": f"Shopper{s.index}",
              "attributes": {}, "created_at": now, "updated_at": now} for s in shoppers],
        ).all()
        ids = [int(row[0]) for row in rows]
        connection.execute(insert(consent), [
            {"customer_id": cid, "channel": channel, "granted": True, "source": "app",
             "given_at": now - timedelta(days=1), "recorded_at": now - timedelta(days=1)}
            for cid in ids for channel in ("push", "location_marketing")
        ])
        connection.execute(insert(device), [
            {"tenant": TENANT, "customer_id": cid, "kind": DeviceKind.FCM.value,
             "token": s.token, "active": True, "registered_at": now}
            for cid, s in zip(ids, shoppers, strict=True)
        ])
        beacons = connection.execute(
            insert(device).returning(device.c.id, sort_by_parameter_order=True),
            [{"tenant": TENANT, "customer_id": cid, "kind": DeviceKind.APP_BEACON.value,
              "active": True, "registered_at": now} for cid in ids],
        ).all()
        links = []
        for cid, s, beacon in zip(ids, shoppers, beacons, strict=True):
            registration = AppBeaconRegistration(kind=DeviceKind.APP_BEACON,
                                                 install_id=s.install_id)
            for key_id, pseudonym in link_pseudonyms(registration, [pseudonymizer]):
                if pseudonym != s.pseudonym:
                    raise RuntimeError("the cloud's link differs from the gateway's pseudonym")
                links.append({"tenant": TENANT, "pseudonym": pseudonym, "key_id": key_id,
                              "device_id": int(beacon[0]), "customer_id": cid,
                              "created_at": now})
        connection.execute(insert(link), links)
    with session_scope(engine) as session:
        spec = TemplateSpec.model_validate(
            {"channel": "push", "locale": "en-GB", "parts": TEMPLATE_PARTS}
        )
        save_template(session, tenant=TENANT, key=TEMPLATE_KEY, spec=spec, now=now)
        save_scenario(session, tenant=TENANT, spec=ScenarioSpec.model_validate(SCENARIO),
                      now=now)
        session.commit()
    # A production database has planner statistics; a freshly filled one has none yet.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))


# --- the processes -----------------------------------------------------------------------


@contextlib.contextmanager
def fcm_server(workdir: Path) -> Iterator[tuple[str, Path]]:
    """The local FCM server in its own process (it stands in for Google's machines)."""
    credentials = workdir / "service-account.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.fcm", "--port", "0", "--project", PROJECT,
         "--credentials-out", str(credentials)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        announced = json.loads(process.stdout.readline())
        yield str(announced["url"]), credentials
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`section.field=value` pairs (value as JSON where it parses) into nested settings."""
    values: dict[str, Any] = json.loads(json.dumps(BASE_OVERRIDES))
    for pair in pairs:
        name, _, raw = pair.partition("=")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        section, _, key = name.partition(".")
        if key:
            values.setdefault(section, {})[key] = value
        else:
            values[section] = value
    return values


def worker_settings(
    *, database_url: str, broker: LocalBroker, fcm_url: str, credentials: Path,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """The worker's settings: production defaults but for where things are and
    `overrides`. Validated here (a typo fails before anything starts)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "tenants": {TENANT: {"keys": [{"key_id": KEY_ID, "secret": KEY_SECRET}]}},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "latency-worker",
                 "share_group": "latency", "session_expiry_s": 0},
        "channels": {"push": {"project_id": PROJECT, "credentials_file": str(credentials),
                              "endpoint": fcm_url}},
        "log_format": "text",
    }
    for section, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(section), dict):
            values[section] = {**values[section], **value}
        else:
            values[section] = value
    Settings(**values)
    return values


def settings_environment(values: dict[str, Any]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VITRINA_")}
    for name, value in values.items():
        env[f"VITRINA_{name.upper()}"] = (
            json.dumps(value) if isinstance(value, dict | list) else str(value)
        )
    return env


def worker_commands(count: int, *, one_process: bool) -> list[list[str]]:
    """The `vitrina-cloud worker` command lines of `count` workers: as deployed, each a
    process per stage (`--stage`, what the systemd units and compose services run), or
    each one process running all the stages."""
    if one_process:
        return [["worker"] for _ in range(count)]
    return [["worker", "--stage", stage.value] for _ in range(count) for stage in Stage]


@contextlib.contextmanager
def worker_processes(
    values: dict[str, Any], commands: Sequence[list[str]], logs: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The worker processes, started and stopped as a process manager would (each its
    own MQTT client id, ingesting ones in one share group; SIGTERM on the way out, and
    each finishes its batch)."""
    processes = []
    try:
        for number, command in enumerate(commands):
            mine = {**values, "mqtt": {**values["mqtt"], "client_id": f"latency-worker-{number}"}}
            with (logs / f"worker-{number}.log").open("wb") as sink:
                processes.append(subprocess.Popen(
                    [*CLOUD_COMMAND, *command],
                    env=settings_environment(mine), stdout=sink, stderr=subprocess.STDOUT,
                    cwd=ROOT,
                ))
        yield processes
    finally:
        stop_processes(processes)


# --- the gateways ------------------------------------------------------------------------


def gateway_status(store: str, *, online: bool = True) -> GatewayStatus:
    return GatewayStatus(tenant=TENANT, store=store, gateway="gw-1", online=online,
                         sent_at=datetime.now(UTC))


@dataclass
class Gateway:
    store: str
    settings: EdgeSettings
    outbox: Outbox
    publisher: MqttPublisher

    def status(self, *, online: bool = True) -> GatewayStatus:
        return gateway_status(self.store, online=online)


def make_gateway(store: str, broker: LocalBroker, workdir: Path) -> Gateway:
    """A store's gateway as the agent builds it: its settings, outbox and publisher."""
    settings = parse_settings(
        {
            "identity": {"tenant": TENANT, "store": store, "gateway": "gw-1"},
            "keys": {"active": KEY_ID, "key": [{"key_id": KEY_ID, "secret": KEY_SECRET}]},
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(workdir / f"{store}.db"), "max_events": 1_000_000},
            "logging": {"level": "WARNING"},
        },
        path=workdir / f"{store}.toml", env={},
    )
    outbox = Outbox(settings.outbox.path, max_events=settings.outbox.max_events)
    publisher = MqttPublisher(
        settings, outbox, on_config=lambda _config: None,
        offline_status=lambda: gateway_status(store, online=False),
    )
    return Gateway(store, settings, outbox, publisher)


def enter_event(shopper: Shopper, store: str) -> PresenceEvent:
    """What the tracker emits when an app beacon has been seen long enough to count."""
    last = datetime.now(UTC)
    first = last - timedelta(seconds=4)
    return PresenceEvent(
        event_id=make_event_id(tenant=TENANT, store=store, gateway="gw-1",
                               pseudonym=shopper.pseudonym, transition=Transition.ENTER,
                               first_seen=first, sequence=0),
        tenant=TENANT, store=store, gateway="gw-1", pseudonym=shopper.pseudonym, key_id=KEY_ID,
        scope=PseudonymScope.STABLE, kind=IdentifierKind.BLE_APP, randomized=False,
        transition=Transition.ENTER, zone="floor", rssi=-62.0, first_seen=first,
        last_seen=last, dwell_s=4.0, sightings=3,
    )


@dataclass
class Handoffs:
    """When each event was written to its gateway's outbox, and its event id."""

    at: dict[int, float] = field(default_factory=dict)
    event_ids: dict[str, int] = field(default_factory=dict)


async def feed(
    gateways: Sequence[Gateway], shoppers: Sequence[Shopper], rate: float, handoffs: Handoffs
) -> float:
    """Hand `shoppers`' enter events to the gateways at `rate` per second, on schedule
    (event i is due i / rate seconds after the start); returns the seconds it took."""
    begun = time.monotonic()
    handed = 0
    while handed < len(shoppers):
        due = min(len(shoppers), int((time.monotonic() - begun) * rate) + 1)
        by_gateway: dict[int, list[tuple[int, PresenceEvent]]] = {}
        for position in range(handed, due):
            shopper = shoppers[position]
            slot = shopper.index % len(gateways)
            by_gateway.setdefault(slot, []).append(
                (shopper.index, enter_event(shopper, gateways[slot].store))
            )
        for slot, items in by_gateway.items():
            gateway = gateways[slot]
            stamp = time.time()
            gateway.outbox.put_many([event for _index, event in items])
            gateway.publisher.wake()
            for index, event in items:
                handoffs.at[index] = stamp
                handoffs.event_ids[event.event_id] = index
        handed = due
        await asyncio.sleep(TICK_S)
    return time.monotonic() - begun


# --- what arrives ------------------------------------------------------------------------


class TransportProbe:
    """A bare paho subscriber on the presence topics: when each message arrived (payloads
    are decoded afterwards, so the receiving thread does nothing but record)."""

    def __init__(self, broker: LocalBroker) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="latency-probe",
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.on_message = self._record
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._client.subscribe(f"{TOPIC_ROOT}/{TENANT}/+/+/presence",
                               options=SubscribeOptions(qos=1))
        if not self._subscribed.wait(STARTUP_TIMEOUT_S):
            raise RuntimeError("the transport probe could not subscribe")

    def _record(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        self.arrivals.append((time.time(), bytes(message.payload)))

    def arrival_by_event(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for at, payload in self.arrivals:
            for event in decode_presence_batch(payload).events:
                found.setdefault(event.event_id, at)
        return found

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class FcmProbe:
    """One push at a time straight to the FCM server through the delivery worker's sender,
    in a thread, until stopped; `sent` says when each accepted one was sent."""

    PREFIX = "fcmprobe"

    def __init__(self, fcm_url: str, credentials: Path) -> None:
        self.sent: dict[int, float] = {}
        self._stop = threading.Event()
        self._sender = FcmSender(FcmSettings(project_id=PROJECT,
                                             credentials_file=str(credentials),
                                             endpoint=fcm_url))
        self._thread = threading.Thread(target=self._run, name="fcm-probe", daemon=True)

    def _push(self, index: int) -> PushMessage:
        return PushMessage(token=fcm_token(self.PREFIX, index), title="probe", body="probe",
                           idempotency_key=f"probe-{index}")

    def warm(self) -> None:
        """One send before the clock runs: the OAuth token and a connection exist."""
        self._sender.send([self._push(10**7)])

    def _run(self) -> None:
        index = 0
        while not self._stop.wait(FCM_PROBE_INTERVAL_S):
            started = time.time()
            result = self._sender.send([self._push(index)])
            if result[0].ok:
                self.sent[index] = started
            index += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._sender.close()


class FcmJournal:
    """Follows the FCM server's record of accepted messages (`GET /_sandbox/messages`)."""

    def __init__(self, url: str) -> None:
        self._client = httpx.Client(base_url=url, timeout=30.0)
        self.received: list[tuple[str, float]] = []

    def poll(self) -> int:
        answer = self._client.get("/_sandbox/messages", params={"since": len(self.received)})
        answer.raise_for_status()
        for item in answer.json()["messages"]:
            self.received.append((str(item["message"].get("token", "")),
                                  float(item["received_at"])))
        return len(self.received)

    def arrivals(self, prefix: str) -> dict[int, list[float]]:
        found: dict[int, list[float]] = {}
        for token, at in self.received:
            index = index_of(token, prefix)
            if index is not None:
                found.setdefault(index, []).append(at)
        return found

    def close(self) -> None:
        self._client.close()


def wait_for_pushes(journal: FcmJournal, wanted: set[int]) -> None:
    """Until every wanted event's push arrived, or none has for `DRAIN_STALL_S`; then a
    grace period in which duplicates would show."""
    seen, progressed = journal.poll(), time.monotonic()
    while time.monotonic() - progressed < DRAIN_STALL_S:
        if wanted <= set(journal.arrivals("shopper")):
            break
        time.sleep(0.25)
        if (count := journal.poll()) > seen:
            seen, progressed = count, time.monotonic()
    time.sleep(DUPLICATE_GRACE_S)
    journal.poll()


def gateway_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT count(*) FROM gateway WHERE tenant = :tenant"), {"tenant": TENANT}
        ).scalar_one()
    return int(found)


async def wait_subscribed(gateways: Sequence[Gateway], engine: Engine) -> None:
    """The worker stores every gateway's status once it is subscribed: only then is a
    presence message sure to reach it (its session starts with its subscription)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while await asyncio.to_thread(gateway_rows, engine) < len(gateways):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not subscribe; see its log")
        for gateway in gateways:
            gateway.publisher.publish_status(gateway.status())
        await asyncio.sleep(0.5)


@dataclass(frozen=True, slots=True)
class Sample:
    """The pipeline's progress at one moment, read from the database."""

    at: float
    events: int
    triggers: int
    unprocessed: int
    messages: int
    pending: int


class ProgressSampler:
    """Reads how far each stage got, every `interval_s`, in a thread of its own: the
    backlog in front of a stage is what says which one falls behind. Each query is an
    index lookup or a small count, so the sampling costs the database little."""

    QUERY = text(
        "SELECT (SELECT coalesce(max(id), 0) FROM presence_event), "
        "(SELECT coalesce(max(id), 0) FROM scenario_trigger), "
        "(SELECT count(*) FROM scenario_trigger WHERE processed_at IS NULL), "
        "(SELECT coalesce(max(id), 0) FROM message), "
        "(SELECT count(*) FROM message WHERE status = 'pending')"
    )

    def __init__(self, engine: Engine, interval_s: float) -> None:
        self.samples: list[Sample] = []
        self._engine = engine
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        with self._engine.connect() as connection:
            while True:
                row = connection.execute(self.QUERY).one()
                connection.rollback()
                self.samples.append(Sample(time.time(), *(int(value) for value in row)))
                if self._stop.wait(self._interval_s):
                    return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


# --- figures -----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of `values` (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Spread:
    """A latency distribution in milliseconds."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Spread:
        ms = [value * 1000 for value in seconds]
        return cls(len(ms), percentile(ms, 50), percentile(ms, 90), percentile(ms, 99),
                   max(ms) if ms else math.nan)

    def row(self, name: str, note: str = "") -> str:
        return (f"| {name} | {self.count:,} | {self.p50:,.1f} | {self.p90:,.1f} | "
                f"{self.p99:,.1f} | {self.max:,.1f} | {note} |")


@dataclass(frozen=True, slots=True)
class Stages:
    """Per-event timestamps the orchestrator stores, for the measured events."""

    recorded: dict[int, float]
    processed: dict[int, float]
    sent: dict[int, float]


def stored_stages(engine: Engine, indexes: Sequence[int]) -> Stages:
    """When ingest wrote each event's trigger (its `now` when the write began), when the
    scenario round that handled it began, and when the delivery round that sent its push
    began: three clocks inside the worker, read back from the rows they stamped."""
    wanted = set(indexes)
    recorded: dict[int, float] = {}
    processed: dict[int, float] = {}
    sent: dict[int, float] = {}
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT c.external_id, t.recorded_at, t.processed_at, m.sent_at "
            "FROM customer c JOIN scenario_trigger t ON t.customer_id = c.id "
            "LEFT JOIN message m ON m.customer_id = c.id WHERE c.tenant = :tenant"
        ), {"tenant": TENANT}).all()
    for external_id, at_recorded, at_processed, at_sent in rows:
        index = int(str(external_id).rsplit("-", 1)[1])
        if index not in wanted:
            continue
        recorded[index] = at_recorded.timestamp()
        if at_processed is not None:
            processed[index] = at_processed.timestamp()
        if at_sent is not None:
            sent[index] = at_sent.timestamp()
    return Stages(recorded, processed, sent)


def stage_spreads(
    stages: Stages, handed: dict[int, float], arrived: dict[int, float],
    indexes: Sequence[int],
) -> dict[str, Spread]:
    complete = [i for i in indexes if i in stages.recorded and i in stages.processed
                and i in stages.sent and i in arrived]
    return {
        "hand-off -> ingest begins writing (edge, MQTT, ingest linger, decoding)":
            Spread.of([stages.recorded[i] - handed[i] for i in complete]),
        "ingest begins writing -> scenario round begins (write, commit, wake-up, "
        "the round before)":
            Spread.of([stages.processed[i] - stages.recorded[i] for i in complete]),
        "scenario round begins -> delivery round begins (the round, wake-up, "
        "the round before)":
            Spread.of([stages.sent[i] - stages.processed[i] for i in complete]),
        "delivery round begins -> request at the FCM server (claim, prepare, send)":
            Spread.of([arrived[i] - stages.sent[i] for i in complete]),
    }


@dataclass(frozen=True, slots=True)
class Throughput:
    """How one stage kept up: its pace over the measured events and what waited for it."""

    per_s: float
    backlog_at_end_of_feed: int
    peak_backlog: int


def throughputs(
    samples: Sequence[Sample], *, begun: float, ended: float, before: int, measured: int
) -> dict[str, Throughput]:
    """Each stage's progress from the sampler: events stored, triggers handled, pushes
    sent. A stage that kept up finishes its share soon after the last hand-off (its pace
    is then the arrival rate); one that fell behind finishes late, and its pace is its
    capacity. The backlog counts what had reached the stage and was not yet done.

    `before` is what every stage had done when the measured phase began: the warm-up,
    whose pushes had all arrived (one event, one trigger, one push each)."""
    if not samples:
        return {}

    def handed(sample: Sample) -> int:
        """Events handed by then (on schedule), counting the warm-up already stored."""
        share = (sample.at - begun) / max(ended - begun, 1e-9)
        return before + min(measured, max(0, round(share * measured)))

    stages: dict[str, tuple[Callable[[Sample], int], Callable[[Sample], int]]] = {
        "ingest: events stored": (
            lambda sample: sample.events, lambda sample: handed(sample) - sample.events,
        ),
        "scenarios: triggers handled": (
            lambda sample: sample.triggers - sample.unprocessed,
            lambda sample: sample.unprocessed,
        ),
        "delivery: pushes sent": (
            lambda sample: sample.messages - sample.pending, lambda sample: sample.pending,
        ),
    }
    found: dict[str, Throughput] = {}
    for name, (done, waiting) in stages.items():
        goal = before + measured
        finished = next((s.at for s in samples if done(s) >= goal), samples[-1].at)
        at_end = min(samples, key=lambda s: abs(s.at - ended))
        found[name] = Throughput(
            per_s=(min(goal, done(samples[-1])) - before) / max(finished - begun, 1e-9),
            backlog_at_end_of_feed=max(0, waiting(at_end)),
            peak_backlog=max(max(0, waiting(s)) for s in samples),
        )
    return found


@dataclass(frozen=True, slots=True)
class Run:
    rate: float
    seconds: float
    #: How many worker processes, and how the stages are laid out among them.
    workers: str
    warmup: int
    measured: int
    achieved_rate: float
    end_to_end: Spread
    thirds: tuple[Spread, Spread, Spread]
    missing: int
    duplicates: int
    transport: Spread
    fcm: Spread
    stages: dict[str, Spread]
    throughput: dict[str, Throughput]
    log_problems: list[str]
    load: tuple[float, float]

    @property
    def floor_p99(self) -> float:
        return self.transport.p99 + self.fcm.p99

    @property
    def ratio(self) -> float:
        return self.end_to_end.p99 / self.floor_p99

    @property
    def meets(self) -> bool:
        return (self.end_to_end.p99 < TARGET_P99_MS and self.missing == 0
                and self.duplicates == 0)


def verdict(run: Run) -> str:
    """Meets or misses at the target rate; at other rates only which side of the bound."""
    if run.rate == TARGET_RATE:
        return "meets" if run.meets else "**misses**"
    return f"({'under' if run.meets else 'over'} {TARGET_P99_MS:.0f} ms)"


def describe_overrides(overrides: dict[str, Any]) -> str:
    return ", ".join(
        f"`{section}.{key}={json.dumps(value)}`"
        for section, fields in overrides.items() if isinstance(fields, dict)
        for key, value in fields.items()
    )


def render(runs: Sequence[Run], *, command: str, overrides: dict[str, Any]) -> str:
    lines = [
        "# Presence-to-push latency",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}) with `{command}`.",
        "",
        "The path is the production one, each part in its own process: the gateways' own "
        f"outbox and MQTT publisher ({STORES} stores, one gateway each, in the bench "
        "process) -> a Mosquitto started for the run -> the orchestrator's worker (presence "
        "ingest, scenario worker and delivery worker with the FCM sender: as deployed, a "
        "`vitrina-cloud worker --stage ...` process per stage, started by the bench as a "
        "process manager would and woken through the database; or all three in one "
        "`vitrina-cloud worker` process, as the workers column says) on a fresh PostgreSQL "
        "database -> the local FCM server in its own process. The database holds one "
        "consenting customer per event (push and location-marketing consent, an FCM token, "
        "the app install whose beacon the gateway reports) and the shop's in-store "
        "greeting (`demo.welcome`: a push on `presence.enter`), so every event starts a "
        "journey and sends exactly one push.",
        "",
        "Events are handed to the gateways' outboxes on schedule, a few every "
        f"{TICK_S * 1000:.0f} ms as the agent flushes, after a warm-up whose pushes all "
        "arrive before the measured events start. Latency runs from the hand-off (the time "
        "is taken just before the outbox write) to the FCM server recording the request; "
        "both are the machine's wall clock. Same-run baselines: a bare paho subscriber on "
        "the presence topics (hand-off -> MQTT arrival through the same outbox, publisher "
        "and broker), and one push at a time through `FcmSender` straight to the FCM "
        f"server every {FCM_PROBE_INTERVAL_S * 1000:.0f} ms during the run. Their p99s "
        "added up are the floor; the ratio is the pipeline's p99 over it.",
        "",
        f"Worker settings: production defaults except {describe_overrides(overrides)}.",
        "",
        "| events/s | workers | events | p50 ms | p90 ms | p99 ms | max ms | missing | "
        "duplicates | floor p99 ms | p99 / floor | verdict |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        e2e = run.end_to_end
        lines.append(
            f"| {run.rate:g} | {run.workers} | {e2e.count:,} | {e2e.p50:,.0f} | "
            f"{e2e.p90:,.0f} | {e2e.p99:,.0f} | {e2e.max:,.0f} | {run.missing} | "
            f"{run.duplicates} | {run.floor_p99:.1f} | {run.ratio:,.1f} | "
            f"{verdict(run)} |"
        )
    lines += ["", f"Target: p99 < {TARGET_P99_MS:.0f} ms at {TARGET_RATE} events/s, every "
              "event exactly one push.", ""]
    for run in runs:
        lines += render_run(run)
    return "\n".join(lines)


def render_run(run: Run) -> list[str]:
    return [
        f"## {run.rate:g} events/s, workers: {run.workers}",
        "",
        f"{run.warmup:,} warm-up and {run.measured:,} measured events ({run.seconds:g} s at "
        f"{run.achieved_rate:.0f}/s achieved). One-minute load average (this run's own "
        "processes and any other work included): "
        f"{run.load[0]:.1f} at the start, {run.load[1]:.1f} at the end.",
        "",
        "| path | events | p50 ms | p90 ms | p99 ms | max ms | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        run.end_to_end.row("presence -> push (end to end)",
                           f"missing {run.missing}, duplicates {run.duplicates}"),
        run.thirds[0].row("&nbsp;&nbsp;events of the first third of the run"),
        run.thirds[1].row("&nbsp;&nbsp;middle third"),
        run.thirds[2].row("&nbsp;&nbsp;last third", "a growing backlog shows here"),
        run.transport.row("baseline: hand-off -> bare paho subscriber",
                          "same outbox, publisher and broker"),
        run.fcm.row("baseline: `FcmSender.send` of one push -> FCM server",
                    f"one every {FCM_PROBE_INTERVAL_S * 1000:.0f} ms during the run"),
        "",
        "Each stage's pace over the measured events, from the database sampled every "
        f"{SAMPLE_INTERVAL_S * 1000:.0f} ms (a stage that keeps up runs at the arrival rate; "
        "one that falls behind runs at its capacity, and its backlog grows):",
        "",
        "| stage | per second | backlog when the last event was handed | peak backlog |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {name} | {t.per_s:,.0f} | {t.backlog_at_end_of_feed:,} | {t.peak_backlog:,} |"
          for name, t in run.throughput.items()),
        "",
        "Where each event's time went, from the timestamps the worker stores: the trigger's "
        "`recorded_at` (ingest's clock when it began writing the batch), its `processed_at` "
        "(when the scenario round that handled it began) and the message's `sent_at` (when "
        "the delivery round that sent it began). A scenario round that works through "
        "several full batches stamps them all with its start, so under a backlog the "
        "second stage can come out negative and its time shows in the third.",
        "",
        "| stage | events | p50 ms | p90 ms | p99 ms | max ms | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        *(spread.row(name) for name, spread in run.stages.items()),
        "",
        f"Worker log: {len(run.log_problems)} warnings or errors.",
        "",
    ]


# --- the run -----------------------------------------------------------------------------


async def drive(
    gateways: Sequence[Gateway], engine: Engine, warmup: Sequence[Shopper],
    measured: Sequence[Shopper], rate: float, journal: FcmJournal, probe: FcmProbe,
    handoffs: Handoffs, sampler: ProgressSampler,
) -> tuple[float, float]:
    """Start the gateways, wait for the worker, warm up, then the measured phase; returns
    when (wall clock) the measured phase's feeding began and ended."""
    stop = asyncio.Event()
    for gateway in gateways:
        await gateway.publisher.start()
        if not await gateway.publisher.wait_connected(STARTUP_TIMEOUT_S):
            raise RuntimeError(f"gateway {gateway.store} did not connect")
    pumps = [asyncio.create_task(gateway.publisher.pump(stop)) for gateway in gateways]
    try:
        await wait_subscribed(gateways, engine)
        await feed(gateways, warmup, rate, handoffs)
        await asyncio.to_thread(wait_for_pushes, journal, {s.index for s in warmup})
        await asyncio.to_thread(analyze, engine)
        probe.start()
        sampler.start()
        begun = time.time()
        await feed(gateways, measured, rate, handoffs)
        ended = time.time()
        await asyncio.to_thread(wait_for_pushes, journal, {s.index for s in measured})
        sampler.stop()
        probe.stop()
        return begun, ended
    finally:
        stop.set()
        await asyncio.gather(*pumps)
        for gateway in gateways:
            await gateway.publisher.close(gateway.status(online=False))
            gateway.outbox.close()


def analyze(engine: Engine) -> None:
    """Planner statistics as autovacuum keeps them on a live database.

    The run is shorter than autovacuum's one-minute cycle, so without this the tables the
    run fills (journeys, messages, attempts, journal) keep the statistics of the seeding:
    empty. Every connection then checks each new row's foreign keys by scanning the
    parent table, which grows all run long."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))


def log_problems(workdir: Path) -> list[str]:
    """Warnings and errors the workers logged (a failed batch would explain a slow run)."""
    return [
        line for log in sorted(workdir.glob("worker-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if " WARNING " in line or " ERROR " in line or " CRITICAL " in line
    ]


def run(
    rate: float, seconds: float, warmup_s: float, overrides: dict[str, Any], workers: int,
    *, one_process: bool,
) -> Run:
    """One phase from scratch: broker, database, FCM server, workers, gateways."""
    pseudonymizer = Pseudonymizer(TenantKey.from_text(KEY_ID, KEY_SECRET))
    warm_count, measured_count = round(rate * warmup_s), round(rate * seconds)
    shoppers = make_shoppers(warm_count + measured_count, pseudonymizer)
    warmup, measured = shoppers[:warm_count], shoppers[warm_count:]
    load_before = os.getloadavg()[0]
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="latency-")))
        stack.callback(lambda: problems.extend(log_problems(workdir)))
        broker = stack.enter_context(local_broker())
        url = stack.enter_context(fresh_database("vitrina_latency"))
        migrate(url)
        engine = make_engine(url)
        stack.callback(engine.dispose)
        print(f"{rate:g}/s: seeding {len(shoppers):,} customers", flush=True)
        seed(engine, shoppers, pseudonymizer)
        fcm_url, credentials = stack.enter_context(fcm_server(workdir))
        values = worker_settings(database_url=url, broker=broker, fcm_url=fcm_url,
                                 credentials=credentials, overrides=overrides)
        commands = worker_commands(workers, one_process=one_process)
        stack.enter_context(worker_processes(values, commands, workdir))
        journal = FcmJournal(fcm_url)
        stack.callback(journal.close)
        transport = TransportProbe(broker)
        stack.callback(transport.close)
        probe = FcmProbe(fcm_url, credentials)
        probe.warm()
        gateways = [make_gateway(f"store-{n + 1}", broker, workdir) for n in range(STORES)]
        handoffs = Handoffs()
        sampler = ProgressSampler(engine, SAMPLE_INTERVAL_S)
        print(f"{rate:g}/s: {warm_count:,} warm-up and {measured_count:,} measured events",
              flush=True)
        begun, ended = asyncio.run(drive(gateways, engine, warmup, measured, rate, journal,
                                         probe, handoffs, sampler))
        indexes = [s.index for s in measured]
        stages = stored_stages(engine, indexes)
    for line in problems:
        print(f"worker log: {line}", file=sys.stderr)
    arrivals = journal.arrivals("shopper")
    first = {index: times[0] for index, times in arrivals.items()}

    def latencies(part: Sequence[int]) -> list[float]:
        return [first[i] - handoffs.at[i] for i in part if i in first]

    third = len(indexes) // 3
    measured_ids = set(indexes)
    transport_latencies = [
        at - handoffs.at[index] for event_id, at in transport.arrival_by_event().items()
        if (index := handoffs.event_ids.get(event_id)) is not None and index in measured_ids
    ]
    probe_arrivals = journal.arrivals(FcmProbe.PREFIX)
    fcm_latencies = [probe_arrivals[i][0] - sent for i, sent in probe.sent.items()
                     if i in probe_arrivals]
    return Run(
        rate=rate, seconds=seconds, warmup=warm_count,
        workers=f"{workers}, all stages in one process" if one_process
        else f"{workers}, a process per stage",
        measured=measured_count, achieved_rate=measured_count / (ended - begun),
        end_to_end=Spread.of(latencies(indexes)),
        thirds=(Spread.of(latencies(indexes[:third])),
                Spread.of(latencies(indexes[third : 2 * third])),
                Spread.of(latencies(indexes[2 * third :]))),
        missing=sum(1 for i in indexes if i not in first),
        duplicates=sum(len(times) - 1 for times in arrivals.values()),
        transport=Spread.of(transport_latencies), fcm=Spread.of(fcm_latencies),
        stages=stage_spreads(stages, handoffs.at, first, indexes),
        throughput=throughputs(sampler.samples, begun=begun, ended=ended,
                               before=warm_count, measured=measured_count),
        log_problems=problems, load=(load_before, os.getloadavg()[0]),
    )


def write_page(path: Path, report: str) -> None:
    """Write the page, keeping whatever follows `KEPT_MARKER` in the existing one (the
    analysis written by hand from the runs)."""
    kept = ""
    if path.exists():
        existing = path.read_text()
        if KEPT_MARKER in existing:
            kept = existing[existing.index(KEPT_MARKER):]
    path.write_text(report + ("\n" + kept if kept else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, nargs="+", default=[TARGET_RATE],
                        help="events per second; several rates run one after the other")
    parser.add_argument("--seconds", type=float, default=25.0, help="measured phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="a worker setting other than the production default")
    parser.add_argument("--workers", type=int, default=1,
                        help="workers: each a process per stage, or one with --one-process")
    parser.add_argument("--one-process", action="store_true",
                        help="each worker runs all stages in one process (`vitrina-cloud "
                             "worker` without --stage), for comparison")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    runs = [run(rate, args.seconds, args.warmup, overrides, args.workers,
                one_process=args.one_process)
            for rate in args.rate]
    command = " ".join(["python -m bench.bench_presence_to_push", *sys.argv[1:]])
    report = render(runs, command=command, overrides=overrides)
    print(report)
    if args.output is not None:
        write_page(args.output, report)


if __name__ == "__main__":
    main()
