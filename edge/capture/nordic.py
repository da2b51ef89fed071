"""BLE packets as the nRF Sniffer for Bluetooth LE records them (LINKTYPE_NORDIC_BLE, 272).

The usual way to record phones' adverts with a cheap dongle: Wireshark's nRF Sniffer
capture plugin writes each packet behind a 17-byte pseudo-header, then the link-layer
packet (access address, PDU header, payload, CRC) that `blell` decodes for the other
BLE link types. Protocol versions 2 and 3 (every sniffer firmware since 2.0) are read;
the legacy formats before them (version 0, marked 0xBEEF, and version 1) are rejected
as unsupported versions, as is any later one, rather than guessed at.

Layout, little-endian:

    offset  size  field
     0      1     board id (whatever the capture tool chose; ignored)
     1      2     payload length: the bytes after this 7-byte header
     3      1     protocol version (2 or 3)
     4      2     packet counter
     6      1     packet id: 0x06 EVENT_PACKET (v2: any packet, its access address says
                  which channel kind); v3: 0x02 advertising-channel, 0x06 data-channel
     7      1     event header length (10: the fields up to the link-layer packet)
     8      1     flags: bit 0 CRC OK; bits 4-6 PHY (0 LE 1M, 1 LE 2M, 2 LE Coded)
     9      1     channel index: 37-39 primary advertising, 0-36 data or secondary (AUX_*)
    10      1     RSSI sample: the signal is minus this, in dBm
    11      2     event counter
    13      4     v2: microseconds since the previous packet ended; v3: firmware timestamp
    17      ...   the BLE link-layer packet

References: https://www.tcpdump.org/linktypes/LINKTYPE_NORDIC_BLE.html and Wireshark's
dissector for it (epan/dissectors/packet-nordic_ble.c), which documents the versions.
"""

from __future__ import annotations

from typing import Final

from edge.capture.beacons import BeaconConfig
from edge.capture.blell import ADVERTISING_ACCESS_ADDRESS, decode_ble_ll
from edge.capture.outcomes import IdentityCaches, RejectReason, Salvaged, SkipReason
from edge.sighting import Sighting

LINKTYPE_NORDIC_BLE: Final = 272

#: Board id and the sniffer's packet header (length, version, counter, id), versions 2+.
NORDIC_HEADER_LEN: Final = 7
#: The packet event's own fields, length octet to timestamp: ten bytes in every version
#: read here. A larger declared length is honoured (the link-layer packet follows it).
EVENT_HEADER_LEN: Final = 10
#: Frames shorter than both headers carry no link-layer packet at all.
MIN_FRAME_LEN: Final = NORDIC_HEADER_LEN + EVENT_HEADER_LEN
SUPPORTED_VERSIONS: Final = frozenset({2, 3})
#: Version 0 frames start with 0xBE 0xEF instead of a board id (tested byte by byte).
#: Version 3 tells advertising-channel packets from data-channel ones by packet id;
#: version 2 sends every received packet as EVENT_PACKET (0x06).
EVENT_PACKET_ADVERTISING, EVENT_PACKET = 0x02, 0x06
#: Channel indexes 37-39 are the primary advertising channels, where legacy adverts go;
#: below that an advertising packet is extended advertising on a secondary channel.
FIRST_PRIMARY_CHANNEL: Final = 37
_FLAG_CRC_OK = 0x01
_PHY_SHIFT, _PHY_MASK, _PHY_CODED = 4, 0x7, 2
_ACCESS_ADDRESS = ADVERTISING_ACCESS_ADDRESS.to_bytes(4, "little")


def decode_nordic_ble_frame(
    frame: bytes, at: float, config: BeaconConfig, source: str, caches: IdentityCaches | None = None
) -> Sighting | Salvaged | RejectReason | SkipReason:
    """LINKTYPE_NORDIC_BLE: RSSI always present, the sniffer's CRC verdict, then the packet."""
    size = len(frame)
    if size < MIN_FRAME_LEN:
        return RejectReason.NORDIC_TRUNCATED
    version = frame[3]
    if version not in SUPPORTED_VERSIONS or (frame[0] == 0xBE and frame[1] == 0xEF):
        return RejectReason.NORDIC_UNSUPPORTED_VERSION
    event_len = frame[7]
    if frame[1] | frame[2] << 8 != size - NORDIC_HEADER_LEN or event_len < EVENT_HEADER_LEN:
        return RejectReason.NORDIC_BAD_LENGTH
    start = NORDIC_HEADER_LEN + event_len
    packet_id = frame[6]
    if version == 3:
        if packet_id == EVENT_PACKET:
            return SkipReason.BLE_NOT_ADVERTISING
        if packet_id != EVENT_PACKET_ADVERTISING:
            return RejectReason.NORDIC_UNKNOWN_PACKET
    elif packet_id != EVENT_PACKET:
        return RejectReason.NORDIC_UNKNOWN_PACKET
    elif frame[start : start + 4] != _ACCESS_ADDRESS:
        # a data-channel packet, or one too short to say: the link layer tells which
        return decode_ble_ll(frame, start, at, None, config, source, caches)
    flags = frame[8]
    if not flags & _FLAG_CRC_OK:
        return RejectReason.BLE_BAD_CRC
    if frame[9] < FIRST_PRIMARY_CHANNEL or (flags >> _PHY_SHIFT) & _PHY_MASK == _PHY_CODED:
        # AUX_* on a secondary channel, or a primary-channel packet on LE Coded (only
        # ADV_EXT_IND goes there, and its packet carries a coding indicator we skip)
        return SkipReason.BLE_EXTENDED_ADVERTISING
    return decode_ble_ll(frame, start, at, float(-frame[10]), config, source, caches)
