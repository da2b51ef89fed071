"""Gateway memory with 100,000 devices tracked at once.

Pseudonymizes and tracks 100,000 distinct phones (each seen often enough to have
entered), then reads the process's resident set size. The baseline is the same
process after the agent's imports with an empty pipeline, so the ratio shows what
the devices cost; the target is on the absolute figure, since that is what the Pi
has to hold.

    .venv/bin/python -m bench.bench_edge_memory [--devices N]

Target: < 80 MB RSS with 100,000 devices.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import edge.agent  # noqa: F401  (the agent's imports: paho, tenacity, sqlite3, pydantic)
from edge.pseudonymize import SightingPseudonymizer
from edge.sighting import Sighting
from edge.tracker import Identity, Tracker, TrackerThresholds
from shared.identifiers import IdentifierKind
from shared.pseudonym import TenantKey

TARGET_RSS_MB = 80.0
START = 1_709_398_800.0  # 2024-03-02T17:00:00Z
KEY = TenantKey.from_text("bench", "42" * 32)


def rss_mb() -> float:
    """Resident set size from /proc (Linux): what the kernel actually holds for us."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def sightings(devices: int, per_device: int = 3) -> Iterator[Sighting]:
    """Generated lazily so the input never sits in memory next to the tracker.

    Every device is seen `per_device` times within a few seconds; four in five are
    randomized Wi-Fi addresses, the rest phones with a global BLE address.
    """
    for index in range(devices):
        randomized = index % 5 != 0
        first = (0x02 if randomized else 0x00) | ((index >> 40) & 0xFC)
        octets = [first, (index >> 32) & 0xFF, (index >> 24) & 0xFF, (index >> 16) & 0xFF,
                  (index >> 8) & 0xFF, index & 0xFF]
        mac = ":".join(f"{octet:02x}" for octet in octets)
        kind = IdentifierKind.WIFI_PROBE if randomized else IdentifierKind.BLE_ADDRESS
        canonical = f"wifi:{mac}" if randomized else f"ble:{mac}"
        at = START + index * 0.01
        for repeat in range(per_device):
            yield Sighting(at + repeat * 0.001, kind, canonical, randomized, -60.0 - index % 20,
                           "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    args = parser.parse_args()
    pseudonymizer = SightingPseudonymizer({KEY.key_id: KEY}, KEY.key_id, ZoneInfo("Europe/Madrid"))
    # Nobody leaves during the run: the point is to hold every device at once.
    thresholds = TrackerThresholds(exit_after_s=86_400, dwell_interval_s=86_400,
                                   max_devices=args.devices * 2)
    tracker = Tracker(Identity("bench", "store-1", "gw-1"), thresholds)
    gc.collect()
    baseline = rss_mb()
    started = time.perf_counter()
    enters = 0
    for sighting in sightings(args.devices):
        for _event in tracker.observe(pseudonymizer.pseudonymize(sighting)):
            enters += 1
    elapsed = time.perf_counter() - started
    gc.collect()
    loaded = rss_mb()
    assert tracker.devices_tracked == args.devices, tracker.devices_tracked
    per_device = (loaded - baseline) * 1e6 / args.devices
    print(f"devices tracked        {tracker.devices_tracked:,} ({enters:,} entered) "
          f"in {elapsed:.1f} s")
    print(f"RSS, empty pipeline    {baseline:.1f} MB (baseline)")
    print(f"RSS, devices tracked   {loaded:.1f} MB")
    print(f"ratio to baseline      {loaded / baseline:.2f}")
    print(f"cost per device        {per_device:.0f} bytes")
    verdict = "meets" if loaded < TARGET_RSS_MB else "MISSES"
    print(f"target                 < {TARGET_RSS_MB:.0f} MB RSS: {verdict}")
    purged = tracker.close()
    print(f"after every exit       {tracker.devices_tracked} tracked "
          f"({len(purged):,} exits reported)")


if __name__ == "__main__":
    main()
