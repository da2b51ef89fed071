"""Occupancy: how many people are in each zone, minute by minute, despite MAC randomization.

Counting addresses counts a modern phone many times (a new random address for nearly every
burst of probe requests, often for every channel of one burst). Here a phone's probe
requests are grouped into scans in gateway memory (`grouping`: address, capability class,
burst timing, sequence continuity, over seconds), and the rate of scans per zone and class
becomes people through a calibrated per-phone scan rate (`estimator`). The counter
(`counter`) turns probe frames into one aggregate report per minute.

Privacy: raw frames are read once (`probes`) and reduced to an address hash, a sequence
number, a capability-class hash and the RSSI. Nothing of that outlives the window it is
needed for (seconds for sequence numbers, five minutes for address hashes,
`OccupancyCounter.history_s` for class keys), nothing is written anywhere, and the
report that leaves the gateway holds counts only (`shared.occupancy`).
"""

from __future__ import annotations

from edge.occupancy.counter import OccupancyCounter, RawProbe
from edge.occupancy.estimator import EstimatorSettings

__all__ = ["EstimatorSettings", "OccupancyCounter", "RawProbe"]
