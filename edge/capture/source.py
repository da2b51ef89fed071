"""What every capture source offers the gateway's pipeline.

A source turns some radio (or a recording of one) into sightings and hands each to
`emit` on the event loop. Live sources run until `stop` is set and recover from
their own failures (counting restarts); a replay returns when its input is exhausted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from edge.sighting import Sighting
from shared.status import SourceHealth

Emit = Callable[[Sighting], None]
#: Told, on the event loop, about every probe request a Wi-Fi source decoded: its time,
#: the raw frame, its RSSI and the source's name. Occupancy estimation reads what the
#: sighting leaves out (sequence number, information elements); the frame stays in memory.
ProbeSink = Callable[[float, bytes, float | None, str], None]


@runtime_checkable
class Source(Protocol):
    name: str

    def health(self) -> SourceHealth:
        """Current figures for the gateway's status heartbeat; cheap, callable any time."""
        ...

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        """Capture until `stop` is set (live) or the input is exhausted (replay)."""
        ...


@runtime_checkable
class ProbeSource(Protocol):
    """A source that can also hand over the probe requests it decodes (Wi-Fi sources)."""

    def attach_probe_sink(self, sink: ProbeSink) -> None:
        """From now on, tell `sink` about every probe request that gave a sighting."""
        ...


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`, ending early when `stop` is set; True if it was.

    Every wait in a source goes through this, so shutdown never waits out a backoff,
    a pacing gap or a watchdog period.
    """
    if seconds <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
