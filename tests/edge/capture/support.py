"""Helpers shared by the capture tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from edge.capture.ble_live import BleLiveSource
from edge.sighting import Sighting

#: Generous for a loaded 2-core machine; conditions normally hold within milliseconds.
EVENTUALLY_S = 5.0


async def eventually(condition: Callable[[], bool], within: float = EVENTUALLY_S) -> None:
    """Poll `condition` on the running loop until it holds; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {within:g} s")
        await asyncio.sleep(0.01)


def mutate(frame: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
    """`frame` with bytes overwritten at (position, value) pairs that fall inside it,
    then `cut` bytes dropped from its end: a damaged copy of a valid frame for fuzzing."""
    mutated = bytearray(frame)
    for position, value in flips:
        if position < len(mutated):
            mutated[position] = value
    return bytes(mutated[: len(mutated) - cut])


async def running(
    source: BleLiveSource, body: Callable[[list[Sighting]], Any]
) -> list[Sighting]:
    """Run the source, await `body(sightings)`, stop, and return what was emitted."""
    sightings: list[Sighting] = []
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(sightings.append, stop))
    try:
        await body(sightings)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    return sightings
