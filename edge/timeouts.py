"""When silence means gone: an exit timeout that follows a device's own rhythm.

A fixed timeout splits the visits of phones that are heard rarely (an iPhone with its
screen off probes about every two minutes; some phones every four) and keeps phones heard
every few seconds "in" long after they left. So a device's timeout is a few times the
median of its recent gaps between bursts, within bounds: never below the configured
`exit_after_s` (a device heard once waits that long, as before) and never above
`MAX_EXIT_AFTER_S`. The tracker (per device) and the occupancy estimator (per capability
class) both use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

#: A device is gone after this many times its median gap: gaps of one phone vary about
#: twofold (a 40 s rhythm has 80 s gaps now and then), and three times the median keeps
#: those inside one visit while a real absence of several gaps still ends it.
GAP_MULTIPLE: Final = 3.0
#: The longest timeout: a phone unheard for ten minutes has left, or is as good as gone for
#: the scenarios that react to presence; no phone probes less often than every five.
MAX_EXIT_AFTER_S: Final = 600.0
#: The timeout of a device heard only through Wi-Fi probe requests, until its own gaps are
#: known, in multiples of `exit_after_s` (240 s by default): phones probe every 20 s to 4
#: minutes (every two minutes is common with the screen off), so the first gap of a slow
#: prober must not end its visit before it could be learnt from. A fast prober learns a
#: shorter timeout at its next burst; BLE devices, heard many times a second, start from
#: `exit_after_s` itself.
PROBE_FIRST_EXIT_MULTIPLE: Final = 2.0
#: Gaps remembered per device: enough for a median that one odd gap does not move, few
#: enough to follow a phone that changes its rhythm (screen on, screen off).
GAPS_KEPT: Final = 5
#: Sightings closer than this are one burst, not an interval: phones repeat a scan
#: 4-8 s later, and a timeout of three such gaps would end visits between scans.
BURST_GAP_S: Final = 10.0


def median_gap(gaps: Sequence[float]) -> float:
    """The median of `gaps` (the upper one of an even count); `gaps` must not be empty."""
    ordered = sorted(gaps)
    return ordered[len(ordered) // 2]


def exit_timeout(
    gaps: Sequence[float], minimum: float, *, maximum: float = MAX_EXIT_AFTER_S,
    multiple: float = GAP_MULTIPLE,
) -> float:
    """`multiple` times the median of `gaps`, clamped to [minimum, max(minimum, maximum)];
    `minimum` when no gap is known yet."""
    if not gaps:
        return minimum
    return min(max(minimum, maximum), max(minimum, multiple * median_gap(gaps)))
