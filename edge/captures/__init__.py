"""Recorded captures shipped with the gateway, for the demo, the tests and the benchmarks.

Each capture is a pcapng file with two interfaces recorded side by side: a Wi-Fi
card in monitor mode (radiotap + 802.11, link type 127) and a BLE sniffer
(link layer with the RSSI pseudo-header, link type 256). `make_captures.py`
regenerates them byte for byte with scapy from a fixed seed.

`demo.pcapng`: the visit in the acceptance journey (five minutes, from
2024-03-02 10:00:00 UTC, the day after Juan bought his washing machine):
- 0-300 s: the store's own Eddystone-UID shelf tag and a neighbour shop's iBeacon
  advertise throughout; the store's access point beacons (skipped: not a phone);
- 20-200 s: Juan walks in. His phone runs the shop app, which advertises a
  128-bit service UUID in ADV_IND and puts its install id `juan-app-0001` in the
  service data of its SCAN_RSP; both use a resolvable private address. His RSSI
  rises from the street to the entrance (about -50 dBm at 60 s), he browses the
  floor, and leaves. His Wi-Fi probes use a randomized MAC, and at 60 s he joins
  the guest Wi-Fi with another randomized (per-network) MAC;
- 40-260 s: Ana, another app user, whose app advertises the app's iBeacon
  (proximity UUID `DEMO_APP_IBEACON_UUID`, install id `DEMO_ANA_INSTALL_ID` in
  major/minor);
- 90-240 s: Pedro's older phone probes and associates with its global MAC;
- throughout: three passers-by probe with randomized MACs that change per burst.

`busy-store.pcapng`: twenty-five minutes of a busy Saturday evening (from 2024-03-02
17:00:00 UTC): a couple of hundred phones come and go (mostly resolvable private BLE
addresses and randomized Wi-Fi MACs that rotate every 15 minutes, some global
MACs and public addresses, a few app users), a dozen shelf beacons advertise
throughout, the access points beacon, and a few frames arrive corrupted (bad FCS,
bad CRC). Each device is seen often, so presence tracking reports far fewer
transitions (enter, dwell, exit) than there are sightings.

`demo-nrf-sniffer.pcap`: the demo visit's BLE radio alone, as an nRF Sniffer for
Bluetooth LE records it (link type 272, LINKTYPE_NORDIC_BLE, the usual way to record
phones' adverts): the same packets, times and signal levels as the BLE frames of
`demo.pcapng`, so both replay to the same BLE sightings.

`malformed-*.pcap`: damaged inputs for the tests: a file cut in the middle of a
record, a file of garbage frames with valid pcap framing, and a file that is not a
capture at all.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Final

CAPTURES_DIR: Final = Path(__file__).resolve().parent

DEMO_TENANT: Final = "demo"
DEMO_STORE: Final = "store-1"
DEMO_GATEWAY: Final = "gw-1"

#: The shop app's iBeacon proximity UUID: major/minor carry an install id.
DEMO_APP_IBEACON_UUID: Final = uuid.UUID("9d8616a8-4f20-4006-be4f-9bc6656b19a9")
#: The shop app's own 128-bit service UUID: its service data is the install id in ASCII.
DEMO_APP_SERVICE_UUID: Final = "4d9a6c2e-0b7f-4c1d-9a55-76697472696e"
#: Juan's app install id, advertised in the app's service data.
JUAN_INSTALL_ID: Final = "juan-app-0001"
#: Ana's app install id: eight hex digits, so it fits the iBeacon's major and minor.
DEMO_ANA_INSTALL_ID: Final = "1f2e3d4c"
#: The store's own Eddystone namespace (10 bytes) for its shelf tags.
DEMO_EDDYSTONE_NAMESPACE: Final = "76697472696e61000001"
#: The store's guest Wi-Fi network and its access point.
DEMO_GUEST_SSID: Final = "Vitrina-Guest"

DEMO_START: Final = 1_709_373_600.0  # 2024-03-02T10:00:00Z
BUSY_START: Final = 1_709_398_800.0  # 2024-03-02T17:00:00Z

DEMO_CAPTURE: Final = CAPTURES_DIR / "demo.pcapng"
DEMO_NRF_CAPTURE: Final = CAPTURES_DIR / "demo-nrf-sniffer.pcap"
BUSY_STORE_CAPTURE: Final = CAPTURES_DIR / "busy-store.pcapng"
TRUNCATED_CAPTURE: Final = CAPTURES_DIR / "malformed-truncated.pcap"
GARBAGE_FRAMES_CAPTURE: Final = CAPTURES_DIR / "malformed-garbage-frames.pcap"
NOT_A_CAPTURE: Final = CAPTURES_DIR / "malformed-not-a-capture.pcap"
