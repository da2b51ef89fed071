"""Probe requests built byte by byte for the occupancy tests (radiotap + 802.11)."""

from __future__ import annotations

import struct

#: Radiotap version 0, length 10, present: Flags (bit 1) and dBm antenna signal (bit 5).
_RADIOTAP = struct.Struct("<BBHIBb")
T0 = 1_772_470_800.0  # 2026-03-02T17:00:00Z, a whole minute

#: Information elements of two phone models: rates, extended rates, HT capabilities.
MODEL_A = (b"\x01\x04\x82\x84\x8b\x96" + b"\x32\x08\x0c\x12\x18\x24\x30\x48\x60\x6c"
           + b"\x2d\x1a\x2d\x40\x1b" + bytes(23))
MODEL_B = (b"\x01\x04\x02\x04\x0b\x16" + b"\x32\x08\x0c\x12\x18\x24\x30\x48\x60\x6c"
           + b"\x2d\x1a\x2d\x00\x17" + bytes(23))


def address(index: int) -> bytes:
    """A locally administered unicast address, distinct per index."""
    return bytes([0x02, 0x00, 0x5E, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF])


def probe(transmitter: bytes, sequence: int = 0, *, rssi: int = -60, model: bytes = MODEL_A,
          ssid: bytes = b"", fcs: bool = False) -> bytes:
    """A probe request frame as a monitor-mode radio delivers it."""
    flags = 0x10 if fcs else 0
    header = (b"\x40\x00\x00\x00" + b"\xff" * 6 + transmitter + b"\xff" * 6
              + struct.pack("<H", (sequence % 4096) << 4))
    elements = bytes([0, len(ssid)]) + ssid + model + b"\x03\x01\x06"
    return _RADIOTAP.pack(0, 0, 10, 0x22, flags, rssi) + header + elements + (
        b"\xde\xad\xbe\xef" if fcs else b"")
