"""What became of a captured frame that did not simply give a sighting.

Four families, counted separately so a gateway's health figures stay honest:
a *rejected* frame is broken (truncated, malformed, failed its checksum, or uses
a value the standards reserve); a *skipped* frame is well formed but carries no
phone identity we use (an access point's beacon, a data frame, a connection
request); a *salvaged* frame is damaged, but its intact part still names a device,
so it gives its sighting and the damage is counted; an *unsupported* frame is of a
link type this gateway does not decode (an Ethernet capture given to replay): not
broken, just not ours, and named by its link type number. Rejections are errors worth
alerting on; skips are normal traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, NamedTuple, TypeVar

from edge.sighting import Sighting
from shared.identifiers import IdentifierKind


class RejectReason(StrEnum):
    """A frame that could not be decoded; counted per reason, never raised."""

    # capture container
    CAPTURE_TRUNCATED = "capture_truncated"  # snap length cut the frame short
    # radiotap
    RADIOTAP_TRUNCATED = "radiotap_truncated"
    RADIOTAP_BAD_VERSION = "radiotap_bad_version"
    RADIOTAP_BAD_LENGTH = "radiotap_bad_length"
    RADIOTAP_FIELD_OVERRUN = "radiotap_field_overrun"
    BAD_FCS = "bad_fcs"
    # 802.11
    DOT11_TRUNCATED = "dot11_truncated"
    DOT11_BAD_VERSION = "dot11_bad_version"
    DOT11_BODY_TRUNCATED = "dot11_body_truncated"
    GROUP_SOURCE_ADDRESS = "group_source_address"
    # BLE link layer
    BLE_PHDR_TRUNCATED = "ble_phdr_truncated"
    BLE_BAD_CRC = "ble_bad_crc"
    BLE_TRUNCATED = "ble_truncated"
    BLE_LENGTH_MISMATCH = "ble_length_mismatch"
    BLE_BAD_PDU_LENGTH = "ble_bad_pdu_length"
    BLE_UNKNOWN_PDU_TYPE = "ble_unknown_pdu_type"
    BLE_MALFORMED_AD = "ble_malformed_ad"
    # nRF Sniffer pseudo-header (LINKTYPE_NORDIC_BLE)
    NORDIC_TRUNCATED = "nordic_truncated"
    NORDIC_UNSUPPORTED_VERSION = "nordic_unsupported_version"  # legacy 0/1, or newer than 3
    NORDIC_BAD_LENGTH = "nordic_bad_length"  # lengths disagree with the frame
    NORDIC_UNKNOWN_PACKET = "nordic_unknown_packet"  # a packet id no capture should hold


class SkipReason(StrEnum):
    """A well-formed frame that names no phone we track."""

    DOT11_NOT_MANAGEMENT = "dot11_not_management"  # control, data and extension frames
    DOT11_OTHER_MANAGEMENT = "dot11_other_management"  # beacons, responses, auth, action...
    BLE_NOT_ADVERTISING = "ble_not_advertising"  # data-channel and isochronous packets
    BLE_NOT_ADVERTISER = "ble_not_advertiser"  # ADV_DIRECT_IND, SCAN_REQ, CONNECT_IND
    BLE_EXTENDED_ADVERTISING = "ble_extended_advertising"  # ADV_EXT_IND / AUX_*: not decoded


class SalvageReason(StrEnum):
    """What was wrong with a damaged frame that still gave its sighting."""

    # the last AD structure runs past the advert's payload: the structures before it
    # (and the address) are kept, as bluetooth-data-tools does for BlueZ's adverts
    BLE_TRUNCATED_AD = "ble_truncated_ad"


class Salvaged(NamedTuple):
    """A sighting from the intact part of a damaged frame, and the damage."""

    sighting: Sighting
    reason: SalvageReason


class UnsupportedLinktype(NamedTuple):
    """A frame of a link type no decoder here reads; `linktype` is its pcap number."""

    linktype: int


class SalvagedIdentity(NamedTuple):
    """What a salvaged advert decodes to: its identity and the damage."""

    kind: IdentifierKind
    canonical_id: str
    randomized: bool
    reason: SalvageReason


#: What a cached frame decodes to: an identity (kind, canonical id, randomized), one
#: salvaged from a damaged frame, or a reason.
CachedOutcome = tuple[IdentifierKind, str, bool] | SalvagedIdentity | RejectReason | SkipReason
IdentityCache = dict[bytes, CachedOutcome]
#: A station's request, known by the start of its 802.11 header: its identity (kind,
#: canonical id, randomized) and the shortest frame that holds that request's fixed fields.
StationIdentity = tuple[IdentifierKind, str, bool, int]

#: Distinct adverts/addresses remembered per decoder. A busy store has a few thousand;
#: the bound keeps memory flat (about 8 MB) whatever the input, and raw identifiers
#: are never held longer than the decoder that caches them.
IDENTITY_CACHE_LIMIT: Final = 16_384

_V = TypeVar("_V")


def remember(cache: dict[bytes, _V], key: bytes, value: _V) -> None:
    """Store, emptying the cache first when full (cheaper than LRU, and refills in a second)."""
    if len(cache) >= IDENTITY_CACHE_LIMIT:
        cache.clear()
    cache[key] = value


@dataclass(slots=True)
class IdentityCaches:
    """What a decoder remembers between frames, each keyed by raw bytes off the air.

    `adverts`: a whole BLE advertising packet to what it decodes to (phones repeat the
    same advert many times a second); `ble_addresses` and `stations`: a device address
    to its canonical identifier (an address repeats even when its advert payload changes);
    `station_headers`: the first 16 bytes of an 802.11 station request (frame control,
    duration, receiver and transmitter) to its identity, since a phone's probe burst
    repeats them frame after frame and they decide everything but the length checks.
    """

    adverts: IdentityCache = field(default_factory=dict)
    ble_addresses: dict[bytes, str] = field(default_factory=dict)
    stations: dict[bytes, str] = field(default_factory=dict)
    station_headers: dict[bytes, StationIdentity] = field(default_factory=dict)
