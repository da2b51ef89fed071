"""The visit in the acceptance journey (`demo.pcapng`): Juan and Ana with the shop app,
Pedro's older phone, passers-by, and the store's own and a neighbour's beacons."""

from __future__ import annotations

import random
import uuid
from typing import Final

from edge.captures import (
    DEMO_ANA_INSTALL_ID,
    DEMO_APP_IBEACON_UUID,
    DEMO_EDDYSTONE_NAMESPACE,
    DEMO_GUEST_SSID,
    DEMO_START,
    JUAN_INSTALL_ID,
)
from edge.captures.generator import GUEST_AP
from edge.captures.generator.devices import (
    approach,
    ble_address,
    ticks,
    wifi_global_mac,
    wifi_random_mac,
)
from edge.captures.generator.frames import (
    ap_beacon,
    app_adverts,
    association_request,
    data_frame,
    eddystone_uid_advert,
    ibeacon_advert,
    probe_request,
    scan_request,
)
from edge.captures.generator.recorder import Recorder

DEMO_SEED: Final = 20240302
#: A neighbour shop's iBeacon.
NEIGHBOUR_IBEACON_UUID: Final = uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")


def build_demo(recorder: Recorder) -> None:
    rng = random.Random(DEMO_SEED)
    t0 = DEMO_START
    tag = "c3:a1:00:00:00:01"  # the store's Eddystone tag (public address, a fixed device)
    for index, t in enumerate(ticks(rng, 0, 300, 2.0)):
        recorder.ble(t0 + t, -70 + rng.gauss(0, 2), index,
                     eddystone_uid_advert(tag, DEMO_EDDYSTONE_NAMESPACE, "000000000001"))
    neighbour = ble_address(rng, 0b11)
    for index, t in enumerate(ticks(rng, 0, 300, 2.0)):
        recorder.ble(t0 + t, -84 + rng.gauss(0, 2), index,
                     ibeacon_advert(neighbour, NEIGHBOUR_IBEACON_UUID, 100, 7))
    for t in ticks(rng, 0, 300, 10.0):
        recorder.wifi(t0 + t, -48, 0, ap_beacon(GUEST_AP, DEMO_GUEST_SSID.encode(),
                                                recorder.next_sequence(GUEST_AP)))

    # Juan: the shop app advertises his install id; probes and guest Wi-Fi use random MACs.
    juan_ble = ble_address(rng, 0b01)
    juan_probe_mac, juan_network_mac = wifi_random_mac(rng), wifi_random_mac(rng)
    indication, response = app_adverts(juan_ble, JUAN_INSTALL_ID)
    for index, t in enumerate(ticks(rng, 20, 200, 1.0)):
        rssi = approach(t, 20, 200, -52 if t < 100 else -64) + rng.gauss(0, 2)
        recorder.ble(t0 + t, rssi, index, indication)
        recorder.ble(t0 + t + 0.0004, rssi, index, response)
    for t in ticks(rng, 25, 200, 30.0):
        for channel in range(3):
            rssi = approach(t, 20, 200, -55) + rng.gauss(0, 2)
            recorder.wifi(t0 + t + channel * 0.02, rssi, channel,
                          probe_request(juan_probe_mac, recorder.next_sequence(juan_probe_mac)))
    recorder.wifi(t0 + 60, -50, 0, association_request(
        juan_network_mac, GUEST_AP, DEMO_GUEST_SSID.encode(),
        recorder.next_sequence(juan_network_mac)))
    for t in ticks(rng, 61, 195, 5.0):
        recorder.wifi(t0 + t, -58, 0, data_frame(juan_network_mac, GUEST_AP,
                                                 recorder.next_sequence(juan_network_mac)))

    # Ana: the app's iBeacon, install id in major/minor.
    ana = ble_address(rng, 0b01)
    major, minor = int(DEMO_ANA_INSTALL_ID[:4], 16), int(DEMO_ANA_INSTALL_ID[4:], 16)
    for index, t in enumerate(ticks(rng, 40, 260, 1.0)):
        recorder.ble(t0 + t, approach(t, 40, 260, -62) + rng.gauss(0, 2), index,
                     ibeacon_advert(ana, DEMO_APP_IBEACON_UUID, major, minor))

    # Pedro: an older phone with its burned-in MAC; it scans actively and joins the guest Wi-Fi.
    pedro = wifi_global_mac(rng)
    for t in ticks(rng, 90, 240, 20.0):
        for channel in range(3):
            recorder.wifi(t0 + t + channel * 0.02, approach(t, 90, 240, -60) + rng.gauss(0, 2),
                          channel, probe_request(pedro, recorder.next_sequence(pedro)))
    recorder.wifi(t0 + 120, -58, 1, association_request(
        pedro, GUEST_AP, DEMO_GUEST_SSID.encode(), recorder.next_sequence(pedro)))
    recorder.wifi(t0 + 180, -61, 1, association_request(
        pedro, GUEST_AP, DEMO_GUEST_SSID.encode(), recorder.next_sequence(pedro),
        reassociation=True))
    recorder.ble(t0 + 150, -61, 0, scan_request(ble_address(rng, 0b01), juan_ble))

    # Passers-by: a fresh random MAC for every probe burst.
    for passer in range(3):
        for t in ticks(rng, 0, 300, 45.0 + passer * 10):
            mac = wifi_random_mac(rng)
            for channel in range(3):
                recorder.wifi(t0 + t + channel * 0.02, -80 + rng.gauss(0, 3), channel,
                              probe_request(mac, recorder.next_sequence(mac)))
