"""Live BLE capture through bleak's real BlueZ backend, against BlueZ's D-Bus API as
python-dbusmock's bluez5 template serves it: the adapter appearing, devices advertising,
the adapter going away and coming back, and BlueZ without the advertisement monitor
interface (no passive scanning). Nothing of bleak is replaced; only bluetoothd is a mock.
"""

from __future__ import annotations

import asyncio
import struct
import uuid

from edge.capture.beacons import APPLE_COMPANY_ID, EDDYSTONE_SERVICE_UUID, BeaconConfig
from edge.capture.ble_live import BleLiveSource, ModePreference
from edge.sighting import Sighting
from shared.identifiers import (
    IdentifierKind,
    app_identifier,
    ble_address_identifier,
    eddystone_identifier,
    ibeacon_identifier,
)
from tests.edge.capture.bluez import MockBluezFactory, bluez, system_bus
from tests.edge.capture.support import eventually, running

__all__ = ["bluez", "system_bus"]  # the fixtures, imported for pytest

APP_UUID = uuid.UUID("9d8616a8-4f20-4006-be4f-9bc6656b19a9")
APP_SERVICE = "4d9a6c2e-0b7f-4c1d-9a55-76697472696e"
CONFIG = BeaconConfig(app_ibeacon_uuid=APP_UUID, app_service_uuid=APP_SERVICE)
PHONE = "4A:22:33:44:55:66"  # a resolvable private address, as phones advertise
BEACON = "3C:5A:B4:00:00:02"
APP_PHONE = "5B:10:20:30:40:50"
EDDYSTONE = "3C:5A:B4:00:00:03"
#: What an iPhone puts in its adverts: Apple's company id, then "nearby" data.
APPLE_NEARBY = {APPLE_COMPANY_ID: bytes.fromhex("1005011c00000000")}


def ibeacon(proximity: uuid.UUID, major: int, minor: int) -> dict[int, bytes]:
    return {APPLE_COMPANY_ID: b"\x02\x15" + proximity.bytes + struct.pack(">HHb", major, minor,
                                                                           -59)}


def make_source(mode: ModePreference = "auto", watchdog_s: float = 30.0) -> BleLiveSource:
    return BleLiveSource(beacons=CONFIG, adapter="hci0", mode=mode, watchdog_s=watchdog_s,
                         retry_min_s=0.02, retry_max_s=0.1)


def test_devices_advertising_through_bluez_become_sightings(bluez: MockBluezFactory) -> None:
    mock = bluez()
    mock.add_adapter()
    source = make_source()

    async def body(sightings: list[Sighting]) -> None:
        await eventually(lambda: source.health().alive)
        phone = mock.add_device(PHONE, rssi=-71, manufacturer_data=APPLE_NEARBY)
        mock.add_device(BEACON, address_type="public", rssi=-80,
                        manufacturer_data=ibeacon(uuid.UUID(int=7), 1, 2))
        mock.add_device(APP_PHONE, rssi=-62, manufacturer_data=ibeacon(APP_UUID, 0x1F2E, 0x3D4C))
        eddystone = b"\x00\xee" + bytes(range(10)) + bytes(range(6)) + b"\x00\x00"
        mock.add_device(EDDYSTONE, address_type="public", rssi=-90,
                        service_data={EDDYSTONE_SERVICE_UUID: eddystone})
        await eventually(lambda: len(sightings) == 4)
        mock.advertise(phone, rssi=-55)  # the phone came closer: BlueZ signals the new RSSI
        mock.advertise(phone, service_data={APP_SERVICE: b"juan-app-0001"})  # scan response
        await eventually(lambda: len(sightings) == 6)

    sightings = asyncio.run(running(source, body))
    assert [(s.kind, s.canonical_id, s.randomized, s.rssi) for s in sightings] == [
        (IdentifierKind.BLE_ADDRESS, ble_address_identifier(PHONE), True, -71.0),
        (IdentifierKind.BLE_IBEACON, ibeacon_identifier(uuid.UUID(int=7), 1, 2), False, -80.0),
        (IdentifierKind.BLE_APP, app_identifier("1f2e3d4c"), False, -62.0),
        (IdentifierKind.BLE_EDDYSTONE,
         eddystone_identifier(bytes(range(10)).hex(), bytes(range(6)).hex()), False, -90.0),
        (IdentifierKind.BLE_ADDRESS, ble_address_identifier(PHONE), True, -55.0),
        (IdentifierKind.BLE_APP, app_identifier("juan-app-0001"), False, -55.0),
    ]
    assert {s.source for s in sightings} == {"ble"}
    health = source.health()
    assert (health.mode, health.degraded, health.errors, health.restarts) == (
        "passive", None, 0, 0)
    assert health.frames == 6


def test_scanning_starts_when_the_adapter_appears(bluez: MockBluezFactory) -> None:
    mock = bluez()  # bluetoothd runs, but the dongle is not plugged in yet
    source = make_source()

    async def body(sightings: list[Sighting]) -> None:
        await eventually(lambda: source.errors >= 2)
        assert not source.health().alive
        assert "adapter 'hci0' not found" in (source.last_error or "")
        mock.add_adapter()
        await eventually(lambda: source.health().alive)
        mock.add_device(PHONE, manufacturer_data=APPLE_NEARBY)
        await eventually(lambda: len(sightings) == 1)

    asyncio.run(running(source, body))
    assert source.health().mode == "passive"


def test_the_source_recovers_when_the_adapter_goes_and_comes_back(
    bluez: MockBluezFactory,
) -> None:
    """An adapter reset or a USB dongle pulled out: BlueZ drops the adapter, and with it
    the scan; nothing else tells the source but the silence that follows."""
    mock = bluez()
    mock.add_adapter()
    source = make_source(watchdog_s=0.3)

    async def body(sightings: list[Sighting]) -> None:
        await eventually(lambda: source.health().alive)
        phone = mock.add_device(PHONE, rssi=-60, manufacturer_data=APPLE_NEARBY)
        await eventually(lambda: len(sightings) == 1)
        mock.remove_adapter()
        await eventually(lambda: source.restarts == 1 and source.errors >= 2)
        assert not source.health().alive
        mock.add_adapter()
        await eventually(lambda: source.health().alive)
        mock.advertise(phone, rssi=-58)
        await eventually(lambda: len(sightings) == 2)

    sightings = asyncio.run(running(source, body))
    assert [s.rssi for s in sightings] == [-60.0, -58.0]
    health = source.health()
    # BlueZ refused the monitor because the adapter was gone, not for want of passive
    # scanning: the source must not have given passive scanning up for good.
    assert (health.mode, health.degraded) == ("passive", None)
    assert health.restarts >= 1


def test_without_the_advertisement_monitor_interface_it_scans_actively_and_says_so(
    bluez: MockBluezFactory,
) -> None:
    """BlueZ older than 5.56, or bluetoothd without --experimental: no passive scanning."""
    mock = bluez(enable_monitor_api=False)
    mock.add_adapter()
    source = make_source(watchdog_s=0.3)

    async def body(sightings: list[Sighting]) -> None:
        await eventually(lambda: source.health().alive)
        assert mock.adapter_property("Discovering")  # an active scan (StartDiscovery)
        mock.add_device(PHONE, manufacturer_data=APPLE_NEARBY)
        await eventually(lambda: len(sightings) == 1)
        await eventually(lambda: source.restarts >= 1)  # silence: the watchdog restarts it
        await eventually(lambda: source.health().alive)

    asyncio.run(running(source, body))
    health = source.health()
    assert health.mode == "active"  # still active after the restart: decided for good
    assert health.degraded is not None
    assert health.degraded.startswith("passive scanning unavailable, scanning actively: ")
    assert "BlueZ >= 5.56" in health.degraded
    assert health.errors == 0  # a fallback, not a failure
    assert not mock.adapter_property("Discovering")  # stopped when the source stopped
