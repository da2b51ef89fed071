"""Canonical identifiers straight from the address bytes of a frame.

`shared.identifiers` defines the canonical forms, from text that it validates (a regex,
then splitting and joining the octets). Six bytes read off the air are always a valid
MAC address, so formatting them directly gives the very same string at a twentieth of
the cost, which counts for every new address a decoder meets (a street of phones with
rotating random addresses is all new addresses). `tests/edge/capture/test_addresses.py`
pins both functions to `shared.identifiers` for every possible address.
"""

from __future__ import annotations


def station_identifier(transmitter: bytes) -> str:
    """`shared.identifiers.wifi_identifier` of a 6-byte 802.11 address (as transmitted)."""
    return "wifi:" + transmitter.hex(":")


def ble_identifier(address: bytes) -> str:
    """`shared.identifiers.ble_address_identifier` of a 6-byte BLE device address as sent
    on air (least significant octet first)."""
    return "ble:" + address[::-1].hex(":")
