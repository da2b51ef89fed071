"""Turning one BLE advertisement into one sighting.

The same function serves the pcap path (which parses AD structures itself) and the
bleak path (which gets them from BlueZ), so both name a device identically: the
cloud links an app install id only if the gateway hashed the very same string.

Priority: the shop app's own beacon > iBeacon > Eddystone-UID > bare BLE address.
A beacon id survives address rotation, so it is always the better identity.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from edge.sighting import Sighting
from shared.errors import ContractError
from shared.identifiers import (
    IdentifierKind,
    app_identifier,
    ble_address_identifier,
    eddystone_identifier,
    ibeacon_identifier,
)

#: Bluetooth SIG company identifier of Apple, which owns the iBeacon format.
APPLE_COMPANY_ID = 0x004C
#: iBeacon manufacturer payload: type 0x02, length 0x15, UUID(16) major(2) minor(2) power(1).
IBEACON_PREFIX = b"\x02\x15"
IBEACON_PAYLOAD_LEN = 23
#: Google's Eddystone service UUID, in the 128-bit form bleak reports service data under.
EDDYSTONE_SERVICE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"
EDDYSTONE_UID_FRAME = 0x00
#: frame type, ranging power, namespace (10), instance (6); two reserved bytes may follow.
EDDYSTONE_UID_MIN_LEN = 18

_BLUETOOTH_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
_IBEACON_LAYOUT = struct.Struct(">16sHH")


class BleAddressType(StrEnum):
    """Bluetooth Core Vol 6 Part B 1.3: the two top bits of a random address say which kind."""

    PUBLIC = "public"
    RANDOM_STATIC = "random_static"  # 0b11: fixed until power cycle, still not an IEEE address
    RESOLVABLE_PRIVATE = "resolvable_private"  # 0b01: rotates; only bonded peers can resolve it
    NON_RESOLVABLE_PRIVATE = "non_resolvable_private"  # 0b00: rotates, never resolvable
    RESERVED = "reserved"  # 0b10: not assigned by the standard


_RANDOM_KINDS = (
    BleAddressType.NON_RESOLVABLE_PRIVATE,
    BleAddressType.RESOLVABLE_PRIVATE,
    BleAddressType.RESERVED,
    BleAddressType.RANDOM_STATIC,
)


def classify_ble_address(most_significant_octet: int, *, random_address: bool) -> BleAddressType:
    """Kind of a BLE device address, given its first octet as displayed (aa in aa:bb:...)."""
    if not random_address:
        return BleAddressType.PUBLIC
    return _RANDOM_KINDS[(most_significant_octet >> 6) & 0b11]


def ble_address_randomized(random_address: bool | None) -> bool:
    """Every random kind counts as randomized: none of them is a stable, registered identity.

    An unknown address type (a platform that does not say) is treated as randomized too:
    the privacy-safe side, since randomized devices get a pseudonym that changes daily.
    """
    return True if random_address is None else random_address


def service_uuid_128(text: str) -> str:
    """Canonical lower-case 128-bit form of a 16-, 32- or 128-bit service UUID."""
    value = text.strip().lower().removeprefix("0x")
    if len(value) == 4 or len(value) == 8:
        try:
            number = int(value, 16)
        except ValueError:
            raise ContractError("service UUID is not hexadecimal") from None
        return f"{number:08x}{_BLUETOOTH_BASE_SUFFIX}"
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ContractError("service UUID must be 16-, 32- or 128-bit") from None


@dataclass(frozen=True, slots=True)
class BeaconConfig:
    """How to recognise the shop app's own beacon among all the adverts in the air.

    `app_ibeacon_uuid`: an iBeacon with this proximity UUID is the app; its install id
    is the major and minor as eight hex digits. `app_service_uuid`: service data under
    this UUID carries the install id (ASCII if it is a valid id, hex otherwise).
    """

    app_ibeacon_uuid: uuid.UUID | None = None
    app_service_uuid: str | None = None

    def __post_init__(self) -> None:
        if self.app_service_uuid is not None:
            object.__setattr__(self, "app_service_uuid", service_uuid_128(self.app_service_uuid))


def install_id_from_service_data(payload: bytes) -> str | None:
    """The app writes its install id as ASCII; other firmware writes raw bytes (read as hex)."""
    try:
        return app_identifier(payload.decode("ascii"))
    except (UnicodeDecodeError, ContractError):
        pass
    try:
        return app_identifier(payload.hex())
    except ContractError:
        return None


def _ibeacon(manufacturer_data: Mapping[int, bytes]) -> tuple[uuid.UUID, int, int] | None:
    payload = manufacturer_data.get(APPLE_COMPANY_ID)
    if payload is None or len(payload) < IBEACON_PAYLOAD_LEN or payload[:2] != IBEACON_PREFIX:
        return None
    raw_uuid, major, minor = _IBEACON_LAYOUT.unpack_from(payload, 2)
    return uuid.UUID(bytes=raw_uuid), major, minor


def _eddystone_uid(service_data: Mapping[str, bytes]) -> str | None:
    payload = service_data.get(EDDYSTONE_SERVICE_UUID)
    if payload is None or len(payload) < EDDYSTONE_UID_MIN_LEN or payload[0] != EDDYSTONE_UID_FRAME:
        return None
    return eddystone_identifier(payload[2:12].hex(), payload[12:18].hex())


def beacon_identity(
    manufacturer_data: Mapping[int, bytes], service_data: Mapping[str, bytes], config: BeaconConfig
) -> tuple[IdentifierKind, str] | None:
    """The beacon identity an advert carries (app, iBeacon, Eddystone-UID, in that order)."""
    if config.app_service_uuid is not None:
        payload = service_data.get(config.app_service_uuid)
        if payload is not None:
            install = install_id_from_service_data(payload)
            if install is not None:
                return IdentifierKind.BLE_APP, install
    ibeacon = _ibeacon(manufacturer_data) if manufacturer_data else None
    if ibeacon is not None:
        proximity_uuid, major, minor = ibeacon
        if proximity_uuid == config.app_ibeacon_uuid:
            return IdentifierKind.BLE_APP, app_identifier(f"{major:04x}{minor:04x}")
        return IdentifierKind.BLE_IBEACON, ibeacon_identifier(proximity_uuid, major, minor)
    if service_data:
        eddystone = _eddystone_uid(service_data)
        if eddystone is not None:
            return IdentifierKind.BLE_EDDYSTONE, eddystone
    return None


#: (kind, canonical identifier, randomized): everything of a sighting but time, RSSI, source.
AdvertIdentity = tuple[IdentifierKind, str, bool]


def advert_identity(
    *,
    address: str,
    random_address: bool | None,
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    config: BeaconConfig,
) -> AdvertIdentity | None:
    """The best identity an advert offers, or None when not even its address is valid.

    Beacon identities are stable by construction (randomized=False); a bare address is
    randomized unless the advertiser said it is public.
    """
    identity = beacon_identity(manufacturer_data, service_data, config)
    if identity is not None:
        return identity[0], identity[1], False
    try:
        canonical = ble_address_identifier(address)
    except ContractError:
        return None
    return IdentifierKind.BLE_ADDRESS, canonical, ble_address_randomized(random_address)


def identify_advert(
    *,
    at: float,
    address: str,
    random_address: bool | None,
    rssi: float | None,
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    config: BeaconConfig,
    source: str,
) -> Sighting | None:
    """A sighting of the best identity an advert offers (see `advert_identity`)."""
    identity = advert_identity(
        address=address,
        random_address=random_address,
        manufacturer_data=manufacturer_data,
        service_data=service_data,
        config=config,
    )
    if identity is None:
        return None
    return Sighting(at, identity[0], identity[1], identity[2], rssi, source)
