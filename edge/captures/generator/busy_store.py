"""A busy Saturday evening (`busy-store.pcapng`): a couple of hundred phones come and go
with rotating addresses, shelf beacons and access points are always on, and a few frames
arrive corrupted."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from typing import Any, Final

from edge.captures import (
    BUSY_START,
    DEMO_APP_IBEACON_UUID,
    DEMO_EDDYSTONE_NAMESPACE,
    DEMO_GUEST_SSID,
)
from edge.captures.generator import GUEST_AP
from edge.captures.generator.devices import (
    approach,
    ble_address,
    ble_public_address,
    ticks,
    wifi_global_mac,
    wifi_random_mac,
)
from edge.captures.generator.frames import (
    ap_beacon,
    association_request,
    data_frame,
    eddystone_uid_advert,
    ibeacon_advert,
    phone_advert,
    probe_request,
    repeated_frame,
)
from edge.captures.generator.recorder import Recorder

BUSY_SEED: Final = 20240302_17
#: The proximity UUID of the store's own shelf tags.
STORE_TAG_IBEACON_UUID: Final = uuid.UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
STAFF_AP: Final = "00:1b:2f:5a:00:02"
STAFF_SSID: Final = "Vitrina-Staff"
#: Resolvable private addresses and randomized probe MACs rotate this often (iOS, Android).
ROTATION_S: Final = 900.0
BUSY_DURATION_S: Final = 1500.0
BUSY_PHONES: Final = 180
BUSY_IBEACON_TAGS: Final = 8
BUSY_EDDYSTONE_TAGS: Final = 4
#: Share of frames a sniffer records damaged (bad FCS / bad CRC) in a crowded band.
CORRUPTION_RATE: Final = 0.003


@dataclass(frozen=True, slots=True)
class Visitor:
    index: int
    arrive: float
    leave: float
    peak: float
    ble_style: str | None  # "apple" | "google" | "band" | "app" | None
    ble_public: bool
    ble_period: float
    probes: str | None  # "random" | "global" | None
    probe_period: float
    joins_wifi: bool


def _visitors(rng: random.Random) -> list[Visitor]:
    visitors = []
    for index in range(BUSY_PHONES):
        stay = rng.uniform(240, 1300)
        arrive = rng.uniform(-stay + 120, BUSY_DURATION_S - 120)
        roll = rng.random()
        ble_style = (
            "apple" if roll < 0.50 else "google" if roll < 0.78 else "band" if roll < 0.84
            else "app" if roll < 0.90 else None
        )
        probe_roll = rng.random()
        probes = "random" if probe_roll < 0.12 else "global" if probe_roll < 0.20 else None
        if ble_style is None and probes is None:
            probes = "random"
        visitors.append(Visitor(
            index=index,
            arrive=arrive,
            leave=arrive + stay,
            peak=rng.uniform(-74, -50),
            ble_style=ble_style,
            ble_public=ble_style == "band" and rng.random() < 0.5,
            ble_period=rng.uniform(1.3, 2.6),
            probes=probes,
            probe_period=rng.uniform(40, 75),
            joins_wifi=rng.random() < 0.25,
        ))
    return visitors


class _Rotating:
    """An address that changes every ROTATION_S, at a phase of its own."""

    def __init__(self, rng: random.Random, make: Any) -> None:
        self.rng, self.make = rng, make
        self.phase = rng.uniform(0, ROTATION_S)
        self.addresses: dict[int, str] = {}

    def at(self, t: float) -> str:
        slot = math.floor((t + self.phase) / ROTATION_S)
        if slot not in self.addresses:
            self.addresses[slot] = self.make(self.rng)
        return self.addresses[slot]


def _visitor_frames(recorder: Recorder, visitor: Visitor, corrupt: random.Random) -> None:
    rng = random.Random(f"{BUSY_SEED}-{visitor.index}")
    t0 = BUSY_START
    start, end = max(visitor.arrive, 0.0), min(visitor.leave, BUSY_DURATION_S)

    def rssi(t: float) -> float:
        return approach(t, visitor.arrive, visitor.leave, visitor.peak) + rng.gauss(0, 3)

    if visitor.ble_style is not None:
        if visitor.ble_public:
            fixed = ble_public_address(rng)
            address: Any = lambda _t: fixed  # noqa: E731
        else:
            address = _Rotating(rng, lambda r: ble_address(r, 0b01)).at
        install = f"{rng.randrange(1 << 32):08x}"
        for index, t in enumerate(ticks(rng, start, end, visitor.ble_period)):
            if visitor.ble_style == "app":
                pdu = ibeacon_advert(address(t), DEMO_APP_IBEACON_UUID,
                                     int(install[:4], 16), int(install[4:], 16))
            else:
                pdu = phone_advert(address(t), visitor.ble_style,
                                   random_address=not visitor.ble_public)
            recorder.ble(t0 + t, rssi(t), index, pdu, crc_valid=corrupt.random() >= CORRUPTION_RATE)
    if visitor.probes is not None:
        if visitor.probes == "global":
            fixed_mac = wifi_global_mac(rng)
            mac: Any = lambda _t: fixed_mac  # noqa: E731
        else:
            mac = _Rotating(rng, wifi_random_mac).at
        for t in ticks(rng, start, end, visitor.probe_period):
            station = mac(t)
            for channel in range(rng.choice((3, 4, 5, 6))):
                recorder.wifi(t0 + t + channel * 0.015, rssi(t), channel,
                              repeated_frame(probe_request, station, 0),
                              bad_fcs=corrupt.random() < CORRUPTION_RATE)
        if visitor.joins_wifi and end - start > 90:
            station = mac(start + 30) if visitor.probes == "global" else wifi_random_mac(rng)
            recorder.wifi(t0 + start + 30, rssi(start + 30), 1, association_request(
                station, GUEST_AP, DEMO_GUEST_SSID.encode(), recorder.next_sequence(station)))
            for t in ticks(rng, start + 31, end, 20.0):
                recorder.wifi(t0 + t, rssi(t), 1,
                              repeated_frame(data_frame, station, GUEST_AP, 0))


def build_busy_store(recorder: Recorder) -> None:
    rng = random.Random(BUSY_SEED)
    corrupt = random.Random(BUSY_SEED + 1)
    t0 = BUSY_START
    for visitor in _visitors(rng):
        _visitor_frames(recorder, visitor, corrupt)
    for tag in range(BUSY_IBEACON_TAGS):
        address, level = ble_address(rng, 0b11), rng.uniform(-80, -62)
        for index, t in enumerate(ticks(rng, 0, BUSY_DURATION_S, 2.5)):
            recorder.ble(t0 + t, level + rng.gauss(0, 2), index,
                         ibeacon_advert(address, STORE_TAG_IBEACON_UUID, 1, tag + 1))
    for tag in range(BUSY_EDDYSTONE_TAGS):
        address, level = ble_public_address(rng), rng.uniform(-80, -62)
        for index, t in enumerate(ticks(rng, 0, BUSY_DURATION_S, 2.5)):
            recorder.ble(t0 + t, level + rng.gauss(0, 2), index,
                         eddystone_uid_advert(address, DEMO_EDDYSTONE_NAMESPACE, f"{tag + 1:012x}"))
    for bssid, ssid in ((GUEST_AP, DEMO_GUEST_SSID), (STAFF_AP, STAFF_SSID)):
        for t in ticks(rng, 0, BUSY_DURATION_S, 10.0):
            recorder.wifi(t0 + t, -45 + rng.gauss(0, 2), 0,
                          repeated_frame(ap_beacon, bssid, ssid.encode(), 0))
