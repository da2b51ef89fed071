"""What a device looks like over time: its addresses (randomized, global, BLE private or
public), when it transmits, and how strongly it is heard as it walks in and out."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Final

#: Vendor OUIs for phones that still probe with their burned-in (global) address.
GLOBAL_OUIS: Final = (
    (0x3C, 0x5A, 0xB4), (0x00, 0x16, 0x32), (0xF0, 0x18, 0x98), (0x8C, 0x85, 0x90),
)


def wifi_random_mac(rng: random.Random) -> str:
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{octet:02x}" for octet in octets)


def wifi_global_mac(rng: random.Random) -> str:
    oui = rng.choice(GLOBAL_OUIS)
    return ":".join(f"{octet:02x}" for octet in (*oui, *(rng.randrange(256) for _ in range(3))))


def ble_address(rng: random.Random, top_bits: int) -> str:
    """top_bits: 0b01 resolvable private, 0b11 static random, 0b00 non-resolvable."""
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (top_bits << 6) | (octets[0] & 0x3F)
    return ":".join(f"{octet:02x}" for octet in octets)


def ble_public_address(rng: random.Random) -> str:
    return wifi_global_mac(rng)


def approach(t: float, start: float, end: float, peak: float, far: float = -88.0) -> float:
    """RSSI of someone who walks in over a minute, stays near `peak`, and walks out."""
    inside = min(t - start, end - t)
    if inside >= 60:
        return peak
    return far + (peak - far) * max(inside, 0.0) / 60


def ticks(rng: random.Random, start: float, end: float, period: float) -> Iterable[float]:
    t = start + rng.uniform(0, period)
    while t < end:
        yield t
        t += period * rng.uniform(0.7, 1.3)
