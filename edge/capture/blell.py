"""BLE link-layer advertising packets, as sniffers record them.

LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR (256) prefixes each packet with a 10-byte
pseudo-header (channel, RSSI, flags saying whether RSSI and CRC are valid);
LINKTYPE_BLUETOOTH_LE_LL (251) is the bare packet: access address, PDU header,
payload, CRC. Legacy advertising PDUs that carry the advertiser's own address
(ADV_IND, ADV_NONCONN_IND, ADV_SCAN_IND, SCAN_RSP) become sightings through
`identify_advert`, the same function the bleak path uses.

References: https://www.tcpdump.org/linktypes/LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR.html,
Bluetooth Core 5.x Vol 6 Part B 2.3 (advertising PDUs), Core Supplement Part A (AD types).
"""

from __future__ import annotations

import struct
import uuid
from typing import Final

from edge.capture.beacons import (
    AdvertIdentity,
    BeaconConfig,
    beacon_identity,
    ble_address_randomized,
)
from edge.capture.outcomes import (
    IdentityCaches,
    RejectReason,
    Salvaged,
    SalvagedIdentity,
    SalvageReason,
    SkipReason,
    remember,
)
from edge.sighting import Sighting
from shared.identifiers import IdentifierKind, ble_address_identifier_from_bytes

LINKTYPE_BLUETOOTH_LE_LL: Final = 251
LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR: Final = 256

#: Every advertising-channel packet uses this access address.
ADVERTISING_ACCESS_ADDRESS: Final = 0x8E89BED6
PHDR_LEN: Final = 10
ACCESS_ADDRESS_LEN, PDU_HEADER_LEN, CRC_LEN, ADDRESS_LEN = 4, 2, 3, 6
#: Legacy advertising payload: the 6-byte address plus at most 31 bytes of AD structures.
MAX_LEGACY_PAYLOAD: Final = 37

# pseudo-header flags (little-endian 16 bits)
_PHDR_SIGNAL_VALID, _PHDR_CRC_CHECKED, _PHDR_CRC_VALID = 0x0002, 0x0400, 0x0800
_PHDR_PDU_TYPE_SHIFT, _PHDR_PDU_TYPE_MASK = 7, 0x7
_PHDR_ADVERTISING, _PHDR_AUX_ADVERTISING = 0, 1

# advertising PDU types (4 bits)
ADV_IND, ADV_DIRECT_IND, ADV_NONCONN_IND, SCAN_REQ, SCAN_RSP, CONNECT_IND, ADV_SCAN_IND = range(7)
ADV_EXT_IND: Final = 7
_ADVERTISER_PDUS = frozenset({ADV_IND, ADV_NONCONN_IND, SCAN_RSP, ADV_SCAN_IND})
_OTHER_PDUS = frozenset({ADV_DIRECT_IND, SCAN_REQ, CONNECT_IND})

# AD types
AD_SERVICE_DATA_16, AD_SERVICE_DATA_32, AD_SERVICE_DATA_128 = 0x16, 0x20, 0x21
AD_MANUFACTURER_DATA = 0xFF
_UUID_SIZES = {AD_SERVICE_DATA_16: 2, AD_SERVICE_DATA_32: 4, AD_SERVICE_DATA_128: 16}

_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def _service_key(uuid_bytes: bytes) -> str:
    """bleak's key for service data: the 128-bit UUID, lower case (bytes are little-endian)."""
    if len(uuid_bytes) == 16:
        return str(uuid.UUID(bytes=uuid_bytes[::-1]))
    return f"{int.from_bytes(uuid_bytes, 'little'):08x}{_BASE_SUFFIX}"


#: (manufacturer data by company id, service data by 128-bit UUID, whether the last
#: structure ran past the payload and was dropped)
AdStructures = tuple[dict[int, bytes], dict[str, bytes], bool]


def parse_ad_structures(data: bytes, start: int, end: int) -> AdStructures | RejectReason:
    """Manufacturer data by company id and service data by 128-bit UUID, like bleak reports.

    A zero length octet ends the significant part (the rest is padding). A structure
    running past the payload ends the parse: the structures before it are kept and the
    truncation is reported (bluetooth-data-tools, which parses BlueZ's adverts for bleak,
    does the same, so both paths see one advert alike). A structure too short for its
    own header is malformed.
    """
    manufacturer: dict[int, bytes] = {}
    service: dict[str, bytes] = {}
    offset = start
    while offset < end:
        length = data[offset]
        if length == 0:
            break
        stop = offset + 1 + length
        if stop > end:
            return manufacturer, service, True
        ad_type = data[offset + 1]
        if ad_type == AD_MANUFACTURER_DATA:
            if length < 3:
                return RejectReason.BLE_MALFORMED_AD
            manufacturer[_U16.unpack_from(data, offset + 2)[0]] = data[offset + 4 : stop]
        elif ad_type in _UUID_SIZES:
            uuid_size = _UUID_SIZES[ad_type]
            if length < 1 + uuid_size:
                return RejectReason.BLE_MALFORMED_AD
            key = _service_key(data[offset + 2 : offset + 2 + uuid_size])
            service[key] = data[offset + 2 + uuid_size : stop]
        offset = stop
    return manufacturer, service, False


def advert_frame_identity(
    frame: bytes, start: int, config: BeaconConfig, addresses: dict[bytes, str] | None = None
) -> AdvertIdentity | SalvagedIdentity | RejectReason | SkipReason:
    """Identity carried by the link-layer packet at `frame[start:]` (access address to CRC).

    The same priority as `advert_identity`; `addresses`, if given, remembers canonical
    identifiers by raw address. An advert whose last AD structure is truncated still
    names its advertiser (or a beacon in the structures before): a `SalvagedIdentity`.
    """
    size = len(frame)
    if size - start < ACCESS_ADDRESS_LEN + PDU_HEADER_LEN + CRC_LEN:
        return RejectReason.BLE_TRUNCATED
    if _U32.unpack_from(frame, start)[0] != ADVERTISING_ACCESS_ADDRESS:
        return SkipReason.BLE_NOT_ADVERTISING
    header = frame[start + 4]
    length = frame[start + 5]
    payload = start + ACCESS_ADDRESS_LEN + PDU_HEADER_LEN
    payload_end = payload + length
    if payload_end + CRC_LEN > size:
        return RejectReason.BLE_TRUNCATED
    if payload_end + CRC_LEN < size:
        return RejectReason.BLE_LENGTH_MISMATCH
    pdu_type = header & 0x0F
    if pdu_type not in _ADVERTISER_PDUS:
        if pdu_type in _OTHER_PDUS:
            return SkipReason.BLE_NOT_ADVERTISER
        if pdu_type == ADV_EXT_IND:
            return SkipReason.BLE_EXTENDED_ADVERTISING
        return RejectReason.BLE_UNKNOWN_PDU_TYPE
    if length < ADDRESS_LEN or length > MAX_LEGACY_PAYLOAD:
        return RejectReason.BLE_BAD_PDU_LENGTH
    structures = parse_ad_structures(frame, payload + ADDRESS_LEN, payload_end)
    if isinstance(structures, RejectReason):
        return structures
    manufacturer, service, truncated = structures
    identity: AdvertIdentity | None = None
    if manufacturer or service:
        beacon = beacon_identity(manufacturer, service, config)
        if beacon is not None:
            identity = beacon[0], beacon[1], False
    if identity is None:
        address = frame[payload : payload + ADDRESS_LEN]
        canonical = None if addresses is None else addresses.get(address)
        if canonical is None:
            canonical = ble_address_identifier_from_bytes(
                address[::-1]
            )  # on air: least significant first
            if addresses is not None:
                remember(addresses, address, canonical)
        identity = (IdentifierKind.BLE_ADDRESS, canonical,
                    ble_address_randomized(bool(header & 0x40)))
    if truncated:
        return SalvagedIdentity(*identity, SalvageReason.BLE_TRUNCATED_AD)
    return identity


def decode_ble_ll(
    frame: bytes,
    start: int,
    at: float,
    rssi: float | None,
    config: BeaconConfig,
    source: str,
    caches: IdentityCaches | None = None,
) -> Sighting | Salvaged | RejectReason | SkipReason:
    """One link-layer packet starting at `frame[start]` (access address first, CRC last).

    With `caches`, a packet whose bytes were seen before skips parsing: a phone repeats
    the same advert many times a second, so replay mostly hits it.
    """
    if caches is None:
        identity = advert_frame_identity(frame, start, config)
    else:
        key = frame[start:] if start else frame
        adverts = caches.adverts
        found = adverts.get(key)
        if found is None:
            found = advert_frame_identity(frame, start, config, caches.ble_addresses)
            remember(adverts, key, found)
        identity = found
    if isinstance(identity, tuple):
        sighting = _new_tuple(Sighting, (at, identity[0], identity[1], identity[2], rssi, source))
        if isinstance(identity, SalvagedIdentity):
            return Salvaged(sighting, identity.reason)
        return sighting
    return identity


def decode_ble_ll_frame(
    frame: bytes, at: float, config: BeaconConfig, source: str, caches: IdentityCaches | None = None
) -> Sighting | Salvaged | RejectReason | SkipReason:
    """LINKTYPE_BLUETOOTH_LE_LL: no pseudo-header, so no RSSI and no CRC verdict."""
    return decode_ble_ll(frame, 0, at, None, config, source, caches)


def decode_ble_phdr_frame(
    frame: bytes, at: float, config: BeaconConfig, source: str, caches: IdentityCaches | None = None
) -> Sighting | Salvaged | RejectReason | SkipReason:
    """LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR: RSSI if marked valid, and the sniffer's CRC verdict."""
    if len(frame) < PHDR_LEN:
        return RejectReason.BLE_PHDR_TRUNCATED
    flags = frame[8] | frame[9] << 8
    if flags & _PHDR_CRC_CHECKED and not flags & _PHDR_CRC_VALID:
        return RejectReason.BLE_BAD_CRC
    pdu_kind = (flags >> _PHDR_PDU_TYPE_SHIFT) & _PHDR_PDU_TYPE_MASK
    if pdu_kind == _PHDR_AUX_ADVERTISING:
        return SkipReason.BLE_EXTENDED_ADVERTISING
    if pdu_kind != _PHDR_ADVERTISING:
        return SkipReason.BLE_NOT_ADVERTISING
    rssi: float | None = None
    if flags & _PHDR_SIGNAL_VALID:
        signal = frame[1]
        rssi = float(signal - 256 if signal > 127 else signal)
    return decode_ble_ll(frame, PHDR_LEN, at, rssi, config, source, caches)


_new_tuple = tuple.__new__  # Sighting(...) without NamedTuple's Python-level __new__
