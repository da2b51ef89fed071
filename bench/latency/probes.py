"""What arrives: the MQTT transport baseline (a bare subscriber), the FCM send baseline
(one push at a time through the delivery worker's sender), the FCM server's record of
the pushes, the worker's subscription, and each stage's progress read from the database."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Engine, text

from bench.latency import FCM_PROBE_INTERVAL_S, PROJECT, STARTUP_TIMEOUT_S, TENANT
from bench.latency.gateways import Gateway
from bench.latency.shoppers import fcm_token, index_of
from cloud.channels.fcm import FcmSender, FcmSettings, PushMessage
from provisioning.local_broker import LocalBroker
from shared.presence import decode_presence_batch
from shared.topics import TOPIC_ROOT

#: After the last hand-off, pushes may take as long as they keep coming (a backlog drains
#: at its own pace); once none has arrived for this long, the missing ones count as lost.
DRAIN_STALL_S = 30.0
#: After everything arrived, wait this long more: a duplicate push would show up by then.
DUPLICATE_GRACE_S = 2.0


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
