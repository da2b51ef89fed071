"""A sighting: one decoded observation of one device, before pseudonymization.

This is the last place a raw identifier exists. Sources (BLE, Wi-Fi monitor,
hostapd, pcap replay) produce sightings; the pipeline pseudonymizes them at once
and the raw `canonical_id` goes no further.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.identifiers import IdentifierKind


@dataclass(frozen=True, slots=True)
class Sighting:
    """One observation. `at` is seconds since the epoch: the capture time in a replay,
    the receive time live; the tracker only ever works on differences of it."""

    at: float
    kind: IdentifierKind
    canonical_id: str
    randomized: bool
    rssi: float | None
    source: str
