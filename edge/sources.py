"""Building the capture sources a config enables.

Live radios are imported only when enabled, so a gateway without Bluetooth never loads
bleak and one without a monitor-mode card never loads scapy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge.capture.replay import PcapReplaySource
from edge.capture.source import Source
from edge.settings import EdgeSettings

if TYPE_CHECKING:
    from edge.beacon.advertiser import StoreBeaconAdvertiser


def build_replay_source(
    settings: EdgeSettings, paths: Sequence[Path], *, speed: float | None,
    shift_to_now: bool = False,
) -> PcapReplaySource:
    return PcapReplaySource(paths, beacons=settings.beacons.to_config(), speed=speed,
                            shift_to_now=shift_to_now)


def build_live_sources(settings: EdgeSettings) -> list[Source]:
    """Every source the config enables, in a fixed order (BLE, Wi-Fi monitor, hostapd, replay)."""
    sources: list[Source] = []
    configured = settings.sources
    beacons = settings.beacons.to_config()
    if configured.ble.enabled:
        from edge.capture.ble_live import BleLiveSource

        ble = configured.ble
        sources.append(BleLiveSource(beacons=beacons, adapter=ble.adapter, mode=ble.mode,
                                     watchdog_s=ble.watchdog_s))
    if configured.wifi_monitor.enabled:
        from edge.capture.wifi_monitor import MANAGEMENT_REQUESTS_FILTER, WifiMonitorSource

        wifi = configured.wifi_monitor
        sources.append(WifiMonitorSource(
            wifi.iface, beacons=beacons, channels=wifi.channels,
            hop_interval_s=wifi.hop_interval_s,
            bpf_filter=MANAGEMENT_REQUESTS_FILTER if wifi.kernel_filter else None,
        ))
    if configured.hostapd.enabled:
        from edge.capture.hostapd import HostapdSource

        sources.append(HostapdSource(configured.hostapd.ctrl_path))
    if configured.replay.enabled:
        sources.append(
            build_replay_source(settings, configured.replay.paths, speed=configured.replay.speed)
        )
    return sources


def build_advertiser(settings: EdgeSettings) -> StoreBeaconAdvertiser | None:
    """The store beacon's advertiser, on the BLE source's adapter; None when BLE is off or
    the gateway must only scan. It advertises once the cloud's config names a beacon."""
    ble = settings.sources.ble
    if not ble.enabled or not ble.advertise:
        return None
    from edge.beacon.advertiser import StoreBeaconAdvertiser

    return StoreBeaconAdvertiser(adapter=ble.adapter)


def sightings_carry_wall_time(sources: Sequence[Source]) -> bool:
    """True unless every source is a recording (whose sightings carry capture time)."""
    return any(not isinstance(source, PcapReplaySource) for source in sources)
