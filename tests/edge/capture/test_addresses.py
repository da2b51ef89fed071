"""Identifiers formatted from address bytes are exactly the shared canonical forms."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.capture.addresses import ble_identifier, station_identifier
from shared.identifiers import ble_address_identifier, wifi_identifier

ADDRESSES = st.binary(min_size=6, max_size=6)


@settings(max_examples=500, deadline=None)
@given(ADDRESSES)
def test_a_station_address_gives_the_shared_wifi_identifier(address: bytes) -> None:
    assert station_identifier(address) == wifi_identifier(address.hex(":"))
    assert station_identifier(address) == wifi_identifier(address.hex().upper())


@settings(max_examples=500, deadline=None)
@given(ADDRESSES)
def test_a_ble_address_on_air_gives_the_shared_ble_identifier(address: bytes) -> None:
    displayed = address[::-1].hex(":")  # on air the address is little-endian
    assert ble_identifier(address) == ble_address_identifier(displayed)
    assert ble_identifier(address) == ble_address_identifier(displayed.upper().replace(":", "-"))


def test_known_addresses() -> None:
    assert station_identifier(bytes.fromhex("DAA1195E0001")) == "wifi:da:a1:19:5e:00:01"
    assert ble_identifier(bytes.fromhex("563412b45a3c")) == "ble:3c:5a:b4:12:34:56"
