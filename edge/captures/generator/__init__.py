"""How the shipped captures are made (`python -m edge.captures.make_captures`), by part:

- `frames`: the frames themselves, built with scapy (radiotap, 802.11, the BLE link
  layer, AD structures, iBeacon and Eddystone payloads), and the nRF Sniffer's header,
  packed from its published layout;
- `recorder`: both radios' frames collected and written in time order to a pcapng, or
  the BLE radio's alone as an nRF Sniffer records them (`demo-nrf-sniffer.pcap`);
- `devices`: a device's addresses, when it transmits and how strongly it is heard;
- `demo_visit`: the visit in the acceptance journey (`demo.pcapng`);
- `busy_store`: a busy Saturday evening (`busy-store.pcapng`);
- `malformed`: the damaged files for the tests.

The stories are described in `edge.captures`.
"""

from __future__ import annotations

from typing import Final

#: The store's guest Wi-Fi access point, in both stories.
GUEST_AP: Final = "00:1b:2f:5a:00:01"
