"""A sighting: one decoded observation of one device, before pseudonymization.

This is the last place a raw identifier exists. Sources (BLE, Wi-Fi monitor,
hostapd, pcap replay) produce sightings; the pipeline pseudonymizes them at once
and the raw `canonical_id` goes no further.
"""

from __future__ import annotations

from typing import NamedTuple

from shared.identifiers import IdentifierKind


class Sighting(NamedTuple):
    """One observation. `at` is seconds since the epoch: the capture time in a replay,
    the receive time live; the tracker only ever works on differences of it.

    Immutable like the frozen dataclasses elsewhere, but a NamedTuple: the decoders
    build one per frame, and a tuple costs a third of what a frozen dataclass does
    (whose every field goes through `object.__setattr__`). The decoders' hot paths
    build it with `tuple.__new__(Sighting, fields)`, which skips even the NamedTuple's
    Python-level `__new__` and halves the cost again.
    """

    at: float
    kind: IdentifierKind
    canonical_id: str
    randomized: bool
    rssi: float | None
    source: str
