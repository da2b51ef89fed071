"""The source contract and its interruptible sleep."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from edge.capture.beacons import BeaconConfig
from edge.capture.ble_live import BleLiveSource
from edge.capture.hostapd import HostapdSource
from edge.capture.replay import PcapReplaySource
from edge.capture.source import Source, sleep_unless_stopped
from edge.capture.wifi_monitor import WifiMonitorSource
from shared.status import SourceHealth


def test_every_source_satisfies_the_contract() -> None:
    sources: list[Source] = [
        PcapReplaySource([], beacons=BeaconConfig()),
        BleLiveSource(beacons=BeaconConfig()),
        WifiMonitorSource("wlan1mon"),
        HostapdSource(Path("/run/hostapd/wlan0")),
    ]
    for source in sources:
        assert isinstance(source, Source)
        health = source.health()
        assert isinstance(health, SourceHealth)
        assert (health.alive, health.frames, health.errors, health.restarts) == (False, 0, 0, 0)
    assert [s.name for s in sources] == ["replay", "ble", "wifi", "hostapd"]


def test_sleep_runs_out_or_ends_early_on_stop() -> None:
    async def scenario() -> tuple[bool, bool, float, bool]:
        stop = asyncio.Event()
        timed_out = await sleep_unless_stopped(stop, 0.05)
        asyncio.get_running_loop().call_later(0.05, stop.set)
        started = time.monotonic()
        stopped = await sleep_unless_stopped(stop, 30)
        return timed_out, stopped, time.monotonic() - started, await sleep_unless_stopped(stop, 0)

    timed_out, stopped, waited, immediate = asyncio.run(scenario())
    assert (timed_out, stopped, immediate) == (False, True, True)
    assert waited < 1.0


def test_an_empty_replay_finishes_at_once() -> None:
    source = PcapReplaySource([], beacons=BeaconConfig())
    asyncio.run(asyncio.wait_for(source.run(lambda _s: None, asyncio.Event()), 5))
    assert source.stats.frames == 0
