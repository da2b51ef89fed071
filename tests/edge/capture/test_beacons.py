"""Which identity an advert yields, and how BLE addresses are classified."""

from __future__ import annotations

import struct
import uuid

import pytest

from edge.capture.beacons import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    BeaconConfig,
    BleAddressType,
    advert_identity,
    ble_address_randomized,
    classify_ble_address,
    identify_advert,
    install_id_from_service_data,
    service_uuid_128,
)
from edge.sighting import Sighting
from shared.errors import ContractError
from shared.identifiers import (
    IdentifierKind,
    app_identifier,
    ble_address_identifier,
    eddystone_identifier,
    ibeacon_identifier,
)

APP_UUID = uuid.UUID("9d8616a8-4f20-4006-be4f-9bc6656b19a9")
APP_SERVICE = "4d9a6c2e-0b7f-4c1d-9a55-76697472696e"
CONFIG = BeaconConfig(app_ibeacon_uuid=APP_UUID, app_service_uuid=APP_SERVICE)
OTHER_UUID = uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
RPA = "4a:22:33:44:55:66"
NAMESPACE, INSTANCE = "76697472696e61000001", "000000000007"


def ibeacon(proximity: uuid.UUID, major: int, minor: int) -> dict[int, bytes]:
    payload = b"\x02\x15" + proximity.bytes + struct.pack(">HHb", major, minor, -59)
    return {APPLE_COMPANY_ID: payload}


def eddystone(frame_type: int = 0x00) -> dict[str, bytes]:
    payload = bytes([frame_type, 0xEE]) + bytes.fromhex(NAMESPACE + INSTANCE) + b"\x00\x00"
    return {EDDYSTONE_SERVICE_UUID: payload}


def identity(
    manufacturer: dict[int, bytes] | None = None,
    service: dict[str, bytes] | None = None,
    *,
    config: BeaconConfig = CONFIG,
    random_address: bool | None = True,
) -> tuple[IdentifierKind, str, bool] | None:
    return advert_identity(address=RPA, random_address=random_address,
                           manufacturer_data=manufacturer or {}, service_data=service or {},
                           config=config)


# ---------------------------------------------------------------- address kinds


@pytest.mark.parametrize(
    ("octet", "random_address", "expected"),
    [
        (0x3C, False, BleAddressType.PUBLIC),
        (0xFF, False, BleAddressType.PUBLIC),
        (0xC5, True, BleAddressType.RANDOM_STATIC),
        (0x4A, True, BleAddressType.RESOLVABLE_PRIVATE),
        (0x0A, True, BleAddressType.NON_RESOLVABLE_PRIVATE),
        (0x8A, True, BleAddressType.RESERVED),
    ],
)
def test_classifies_addresses_by_type_and_top_bits(
    octet: int, random_address: bool, expected: BleAddressType
) -> None:
    assert classify_ble_address(octet, random_address=random_address) is expected


def test_every_random_kind_is_randomized_and_unknown_is_treated_as_random() -> None:
    assert ble_address_randomized(True) is True
    assert ble_address_randomized(False) is False
    assert ble_address_randomized(None) is True


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("feaa", "0000feaa-0000-1000-8000-00805f9b34fb"),
        ("0xFEAA", "0000feaa-0000-1000-8000-00805f9b34fb"),
        ("12345678", "12345678-0000-1000-8000-00805f9b34fb"),
        (APP_SERVICE.upper(), APP_SERVICE),
        ("{" + APP_SERVICE + "}", APP_SERVICE),
    ],
)
def test_service_uuids_are_canonicalised(text: str, canonical: str) -> None:
    assert service_uuid_128(text) == canonical
    assert BeaconConfig(app_service_uuid=text).app_service_uuid == canonical


@pytest.mark.parametrize("text", ["fe", "zzzz", "not-a-uuid", "0000feaa-0000"])
def test_bad_service_uuids_are_refused(text: str) -> None:
    with pytest.raises(ContractError):
        BeaconConfig(app_service_uuid=text)


def test_install_id_is_ascii_when_valid_and_hex_otherwise() -> None:
    assert install_id_from_service_data(b"juan-app-0001") == app_identifier("juan-app-0001")
    assert install_id_from_service_data(b"\x01\x02\xfe\xff") == app_identifier("0102feff")
    assert install_id_from_service_data(b"has space") == app_identifier(b"has space".hex())
    assert install_id_from_service_data(b"\x01") is None  # two hex digits: too short for an id
    assert install_id_from_service_data(b"") is None


# ---------------------------------------------------------------- priority


def test_the_apps_service_data_beats_everything() -> None:
    everything = identity(ibeacon(OTHER_UUID, 1, 2), {APP_SERVICE: b"juan-app-0001",
                                                       **eddystone()})
    assert everything == (IdentifierKind.BLE_APP, app_identifier("juan-app-0001"), False)


def test_the_apps_ibeacon_is_the_app() -> None:
    assert identity(ibeacon(APP_UUID, 0x1F2E, 0x3D4C), eddystone()) == (
        IdentifierKind.BLE_APP, app_identifier("1f2e3d4c"), False)


def test_ibeacon_beats_eddystone() -> None:
    assert identity(ibeacon(OTHER_UUID, 100, 7), eddystone()) == (
        IdentifierKind.BLE_IBEACON, ibeacon_identifier(OTHER_UUID, 100, 7), False)


def test_eddystone_uid_beats_the_address() -> None:
    assert identity(service=eddystone()) == (
        IdentifierKind.BLE_EDDYSTONE, eddystone_identifier(NAMESPACE, INSTANCE), False)


def test_other_adverts_fall_back_to_the_address() -> None:
    apple_nearby = {APPLE_COMPANY_ID: bytes.fromhex("1005011c1a2b3c")}
    short_ibeacon = {APPLE_COMPANY_ID: ibeacon(OTHER_UUID, 1, 2)[APPLE_COMPANY_ID][:22]}
    for manufacturer, service in (
        (apple_nearby, {}),
        (short_ibeacon, {}),
        ({}, eddystone(frame_type=0x10)),  # Eddystone-URL: no identity in it
        ({}, {EDDYSTONE_SERVICE_UUID: b"\x00\xee\x01"}),  # a UID frame cut short
        ({}, {APP_SERVICE: b"\x01"}),  # the app's service, but no usable id
    ):
        assert identity(manufacturer, service) == (
            IdentifierKind.BLE_ADDRESS, ble_address_identifier(RPA), True)


def test_without_app_configuration_the_apps_beacons_are_plain_beacons() -> None:
    assert identity(ibeacon(APP_UUID, 1, 2), {APP_SERVICE: b"juan-app-0001"},
                    config=BeaconConfig()) == (
        IdentifierKind.BLE_IBEACON, ibeacon_identifier(APP_UUID, 1, 2), False)


def test_public_and_unknown_address_types() -> None:
    assert identity(random_address=False) == (IdentifierKind.BLE_ADDRESS,
                                              ble_address_identifier(RPA), False)
    assert identity(random_address=None) == (IdentifierKind.BLE_ADDRESS,
                                             ble_address_identifier(RPA), True)


def test_identify_advert_builds_the_sighting() -> None:
    sighting = identify_advert(at=12.5, address=RPA.upper(), random_address=True, rssi=-70.0,
                               manufacturer_data={}, service_data={}, config=CONFIG, source="ble")
    assert sighting == Sighting(12.5, IdentifierKind.BLE_ADDRESS, ble_address_identifier(RPA),
                                True, -70.0, "ble")


def test_an_address_that_is_not_a_mac_gives_nothing() -> None:
    assert identify_advert(at=0.0, address="1B0E2C6A-0000-4000-8000-000000000001",
                           random_address=None, rssi=None, manufacturer_data={},
                           service_data={}, config=CONFIG, source="ble") is None
    # ...unless the advert carries a beacon identity, which needs no address
    beacon = identify_advert(at=0.0, address="not-a-mac", random_address=None, rssi=None,
                             manufacturer_data=ibeacon(OTHER_UUID, 1, 2), service_data={},
                             config=CONFIG, source="ble")
    assert beacon is not None
    assert beacon.kind is IdentifierKind.BLE_IBEACON
