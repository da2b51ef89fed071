from __future__ import annotations

from pathlib import Path

from edge.capture.ble_live import BleLiveSource
from edge.capture.hostapd import HostapdSource
from edge.capture.replay import PcapReplaySource
from edge.capture.wifi_monitor import MANAGEMENT_REQUESTS_FILTER, WifiMonitorSource
from edge.captures import DEMO_CAPTURE
from edge.sources import build_live_sources, build_replay_source, sightings_carry_wall_time
from tests.edge.support import make_settings


def test_every_enabled_source_is_built_from_the_config() -> None:
    settings = make_settings(
        beacons={"app_ibeacon_uuid": "9d8616a8-4f20-4006-be4f-9bc6656b19a9"},
        sources={
            "ble": {"enabled": True, "adapter": "hci1", "mode": "active", "watchdog_s": 30},
            "wifi_monitor": {"enabled": True, "iface": "mon0", "channels": [1, 6],
                             "hop_interval_s": 0.5},
            "hostapd": {"enabled": True, "ctrl_path": "/run/hostapd/wlan0"},
            "replay": {"enabled": True, "paths": [str(DEMO_CAPTURE)], "speed": 2.0},
        },
    )
    ble, wifi, hostapd, replay = build_live_sources(settings)
    assert isinstance(ble, BleLiveSource)
    assert (ble.preference, ble.watchdog_s) == ("active", 30)
    assert ble.beacons.app_ibeacon_uuid is not None
    assert isinstance(wifi, WifiMonitorSource)
    assert (wifi.iface, wifi.channels, wifi.hop_interval_s) == ("mon0", (1, 6), 0.5)
    assert wifi.bpf_filter == MANAGEMENT_REQUESTS_FILTER
    assert isinstance(hostapd, HostapdSource)
    assert hostapd.ctrl_path == Path("/run/hostapd/wlan0")
    assert isinstance(replay, PcapReplaySource)
    assert replay.speed == 2.0
    assert sightings_carry_wall_time([ble, replay])


def test_nothing_enabled_builds_nothing_and_replays_keep_their_own_clock() -> None:
    settings = make_settings()
    assert build_live_sources(settings) == []
    replay = build_replay_source(settings, [DEMO_CAPTURE], speed=None)
    assert replay.speed is None
    assert not sightings_carry_wall_time([replay])
