"""The stores' gateways, built as the agent builds them (the edge's own outbox and MQTT
publisher, in the bench process), and the feeder that hands them events on schedule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.latency import KEY_ID, KEY_SECRET, TENANT, TICK_S
from bench.latency.shoppers import Shopper
from edge.outbox import Outbox
from edge.publisher import MqttPublisher
from edge.settings import EdgeSettings, parse_settings
from provisioning.local_broker import LocalBroker
from shared.identifiers import IdentifierKind
from shared.presence import PresenceEvent, PseudonymScope, Transition, make_event_id
from shared.status import GatewayStatus


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
