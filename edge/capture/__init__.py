"""Capture: from radio frames (live or recorded) to sightings.

Decoders read only the bytes a sighting needs (struct and indexing, no generic
dissector), so a Raspberry-Pi class gateway keeps up with a busy store and a
recorded capture replays at tens of thousands of frames per second. Link types read:
radiotap 802.11 (127, `dot11`), the BLE link layer bare or behind the RSSI pseudo-header
(251, 256, `blell`), and as the nRF Sniffer for Bluetooth LE records it (272, `nordic`).

Public API: `BeaconConfig`, `identify_advert` (beacons), `Source` (source),
`PcapReplaySource`, `ReplayStats`, `read_pcap_sightings` (replay). Live sources
live in `ble_live`, `wifi_monitor` and `hostapd`, imported on demand so a replay
does not load bleak.
"""

from __future__ import annotations

from edge.capture.beacons import BeaconConfig, BleAddressType, classify_ble_address, identify_advert
from edge.capture.decode import decode_frame
from edge.capture.outcomes import RejectReason, SkipReason
from edge.capture.replay import PcapReplaySource, ReplayStats, read_pcap_sightings
from edge.capture.source import Source

__all__ = [
    "BeaconConfig",
    "BleAddressType",
    "PcapReplaySource",
    "RejectReason",
    "ReplayStats",
    "SkipReason",
    "Source",
    "classify_ble_address",
    "decode_frame",
    "identify_advert",
    "read_pcap_sightings",
]
