"""A test subscriber: records every message under one tenant's topics, from paho's thread."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.presence import decode_presence_batch
from shared.topics import parse_topic


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Collector:
    """Subscribes to `vitrina/v1/<tenant>/#`. With `session=True` it keeps a persistent
    session (clean_start false, an hour's expiry), so a broker restart loses nothing."""

    def __init__(self, host: str, port: int, tenant: str, *, session: bool = False) -> None:
        self.tenant = tenant
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._session = session
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"collector-{tenant}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.reconnect_delay_set(1, 2)
        properties = None
        if session:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
        self.client.connect(host, port, keepalive=10, clean_start=not session,
                            properties=properties)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("collector could not subscribe")

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe(f"vitrina/v1/{self.tenant}/#", qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), message.retain))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def presence_event_ids(self) -> list[str]:
        ids: list[str] = []
        for message in self.snapshot():
            if message.topic.endswith("/presence"):
                batch = decode_presence_batch(message.payload, topic=parse_topic(message.topic))
                ids.extend(event.event_id for event in batch.events)
        return ids

    def wait_for(self, predicate: Callable[[Collector], bool], within_s: float = 10.0) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_retained(host: str, port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"cloud-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
