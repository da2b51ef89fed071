"""Synthetic sightings and settings for the edge tests (radio hardware is the one thing mocked)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge.agent import EdgeAgent
from edge.capture.replay import PcapReplaySource
from edge.captures import DEMO_CAPTURE
from edge.settings import EdgeSettings, parse_settings
from edge.sighting import Sighting
from shared.identifiers import (
    IdentifierKind,
    app_identifier,
    ble_address_identifier,
    ibeacon_identifier,
    wifi_identifier,
)
from shared.presence import PresenceEvent, PseudonymScope, Transition, make_event_id
from shared.status import SourceHealth

SECRET_HEX = "5a" * 32
#: 2024-03-01T10:00:00Z: a fixed capture clock so event ids are reproducible.
T0 = 1_709_287_200.0


def settings_document(
    *, tenant: str = "demo", outbox: Path | None = None, mqtt_port: int = 1883, **extra: object
) -> dict[str, object]:
    document: dict[str, object] = {
        "identity": {"tenant": tenant, "store": "store-1", "gateway": "gw-1"},
        "keys": {"active": "k1", "key": [{"key_id": "k1", "secret": SECRET_HEX},
                                          {"key_id": "k2", "secret": "a5" * 32}]},
        "tracker": {"enter_sightings": 2, "enter_window_s": 30, "dwell_interval_s": 60,
                    "exit_after_s": 20},
        "zones": [{"zone": "entrance", "min_rssi": -55}, {"zone": "floor", "min_rssi": -75}],
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "reconnect_min_s": 0.2,
                 "reconnect_max_s": 1.0},
        "status_interval_s": 1.0,
        "tick_interval_s": 0.2,
        "timezone": "Europe/Madrid",
    }
    if outbox is not None:
        document["outbox"] = {"path": str(outbox)}
    document.update(extra)
    return document


def make_settings(**kwargs: object) -> EdgeSettings:
    return parse_settings(settings_document(**kwargs), path=Path("test.toml"), env={})  # type: ignore[arg-type]


def sighting(
    mac: str = "00:1a:11:00:00:01", *, at: float = T0, rssi: float | None = -60.0,
    kind: IdentifierKind = IdentifierKind.WIFI_PROBE, randomized: bool | None = None,
) -> Sighting:
    wifi = kind.value.startswith("wifi")
    canonical = wifi_identifier(mac) if wifi else ble_address_identifier(mac)
    if randomized is None:
        randomized = bool(int(mac[:2], 16) & 0x02)
    return Sighting(at=at, kind=kind, canonical_id=canonical, randomized=randomized, rssi=rssi,
                    source="test")


@dataclass(frozen=True, slots=True)
class Crowd:
    """A synthetic store: who was there, and the raw identifiers that must never leak."""

    sightings: list[Sighting]
    macs: list[str]
    beacon_uuids: list[str]
    install_ids: list[str]


def crowd(devices: int = 40, *, seconds: float = 120.0, seed: int = 7, start: float = T0) -> Crowd:
    """Phones of every kind walking in and out, one sighting per device every ~2 s."""
    rng = random.Random(seed)
    macs, uuids, installs = [], [], []
    plan: list[tuple[float, float, IdentifierKind, str, bool]] = []
    for index in range(devices):
        arrive = start + rng.uniform(0, seconds / 2)
        leave = arrive + rng.uniform(10, seconds / 2)
        flavour = index % 4
        mac = ":".join(f"{rng.randrange(256):02x}" for _ in range(6))
        if flavour == 0:  # a randomized Wi-Fi probe
            mac = f"{(int(mac[:2], 16) | 0x02) & 0xFE:02x}" + mac[2:]
            plan.append((arrive, leave, IdentifierKind.WIFI_PROBE, wifi_identifier(mac), True))
            macs.append(mac)
        elif flavour == 1:  # a phone with its global MAC
            mac = f"{int(mac[:2], 16) & 0xFC:02x}" + mac[2:]
            plan.append((arrive, leave, IdentifierKind.WIFI_ASSOCIATION, wifi_identifier(mac),
                         False))
            macs.append(mac)
        elif flavour == 2:  # an iBeacon
            text = str(uuid.UUID(int=rng.getrandbits(128)))
            uuids.append(text)
            plan.append((arrive, leave, IdentifierKind.BLE_IBEACON,
                         ibeacon_identifier(text, index, 7), False))
        else:  # the shop's app
            install = f"inst-{rng.getrandbits(64):016x}"
            installs.append(install)
            plan.append((arrive, leave, IdentifierKind.BLE_APP, app_identifier(install), False))
    sightings: list[Sighting] = []
    for arrive, leave, kind, canonical, randomized in plan:
        at = arrive
        while at < leave:
            sightings.append(Sighting(at=at, kind=kind, canonical_id=canonical,
                                      randomized=randomized, rssi=rng.uniform(-85, -45),
                                      source="synthetic"))
            at += rng.uniform(1.0, 3.0)
    sightings.sort(key=lambda item: item.at)
    return Crowd(sightings, macs, uuids, installs)


def make_event(
    index: int, *, daily: bool = False, tenant: str = "demo", at: float = T0
) -> PresenceEvent:
    """A valid presence event with a distinct id per index."""
    first_seen = datetime.fromtimestamp(at + index, UTC)
    pseudonym = f"k1:{index:032x}"
    return PresenceEvent(
        event_id=make_event_id(tenant=tenant, store="store-1", gateway="gw-1", pseudonym=pseudonym,
                               transition=Transition.ENTER, first_seen=first_seen, sequence=0),
        tenant=tenant, store="store-1", gateway="gw-1", pseudonym=pseudonym, key_id="k1",
        scope=PseudonymScope.DAILY if daily else PseudonymScope.STABLE,
        kind=IdentifierKind.WIFI_PROBE if daily else IdentifierKind.BLE_APP,
        randomized=daily, transition=Transition.ENTER, zone="floor", rssi=-60.0,
        first_seen=first_seen, last_seen=first_seen, dwell_s=0.0, sightings=2,
    )


class ListSource:
    """A capture source that plays prepared sightings (radio hardware is what we mock).

    `hold=True` keeps it "alive" after the list, like a live radio, until `stop`."""

    def __init__(
        self, sightings: list[Sighting], *, name: str = "synthetic", every: int = 200,
        pause_s: float = 0.0, hold: bool = False,
    ) -> None:
        self.name = name
        self.sightings = sightings
        self.every = every
        self.pause_s = pause_s
        self.hold = hold
        self.emitted = 0
        self.alive = False

    def health(self) -> SourceHealth:
        return SourceHealth(alive=self.alive, frames=self.emitted, errors=0)

    async def run(self, emit: Callable[[Sighting], None], stop: asyncio.Event) -> None:
        self.alive = True
        try:
            for index, item in enumerate(self.sightings):
                if stop.is_set():
                    return
                emit(item)
                self.emitted += 1
                if index % self.every == self.every - 1:
                    await asyncio.sleep(self.pause_s)
            if self.hold:
                await stop.wait()
        finally:
            self.alive = False


async def until(predicate: Callable[[], bool], within_s: float = 10.0) -> bool:
    """Poll `predicate` on the loop until it holds or `within_s` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


class TimedReplay(PcapReplaySource):
    """The replay source, noting when its capture ran out."""

    ended_at = 0.0

    async def run(self, emit: Callable[[Sighting], None], stop: asyncio.Event) -> None:
        await super().run(emit, stop)
        self.ended_at = time.monotonic()


def replay_demo_timed(settings: EdgeSettings, *, drain_timeout: float) -> tuple[float, float]:
    """Replay the demo capture through the agent until every event is acknowledged:
    (the whole run, the part after the capture's end) in seconds."""
    source = TimedReplay([DEMO_CAPTURE], beacons=settings.beacons.to_config())
    agent = EdgeAgent(settings, [source], live=False)

    async def run() -> tuple[float, float]:
        started = time.monotonic()
        summary = await agent.run(asyncio.Event(), drain_timeout=drain_timeout)
        finished = time.monotonic()
        assert summary.drained
        assert summary.published_events == summary.events > 0
        return finished - started, finished - source.ended_at

    return asyncio.run(run())
