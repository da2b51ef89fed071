"""Canonical identifier strings: the exact bytes both sides pseudonymize.

A phone's app reports its beacon install id to the cloud, and the gateway sees
the same id in an advert; both must hash the *same* string or the link fails.
So the canonical forms live here, and nowhere else.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum

from shared.errors import ContractError

_MAC_PATTERN = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
_HEX_PATTERN = re.compile(r"^[0-9a-f]+$")
_APP_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{4,128}$")

#: Bit 1 of the first octet: set for locally administered (randomized) addresses.
LOCALLY_ADMINISTERED_BIT = 0x02


class IdentifierKind(StrEnum):
    """How the gateway came to know a device; travels in every presence event."""

    BLE_IBEACON = "ble_ibeacon"
    BLE_EDDYSTONE = "ble_eddystone"
    BLE_APP = "ble_app"
    BLE_ADDRESS = "ble_address"
    WIFI_ASSOCIATION = "wifi_association"
    WIFI_PROBE = "wifi_probe"


def canonical_mac(mac: str) -> str:
    """Lower-case, colon-separated form of a 48-bit MAC; ContractError otherwise."""
    text = mac.strip().lower()
    if not _MAC_PATTERN.fullmatch(text):
        raise ContractError("not a 48-bit MAC address (expected six hex octets)")
    digits = text.replace(":", "").replace("-", "")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def is_randomized_mac(mac: str) -> bool:
    """True for a locally administered address (the Wi-Fi randomization bit).

    For BLE, address type decides instead; see `edge` for that classification.
    """
    return bool(int(canonical_mac(mac)[:2], 16) & LOCALLY_ADMINISTERED_BIT)


WIFI_PREFIX = "wifi:"
BLE_ADDRESS_PREFIX = "ble:"
MAC_BYTES = 6


def wifi_identifier(mac: str) -> str:
    """A station seen through probes or associations; both give the same identifier."""
    return WIFI_PREFIX + canonical_mac(mac)


def ble_address_identifier(mac: str) -> str:
    return BLE_ADDRESS_PREFIX + canonical_mac(mac)


def _mac_from_bytes(address: bytes) -> str:
    """Six bytes, most significant first, in the canonical text form.

    Frames read off the air give bytes, and any six bytes are a valid MAC: formatting
    them directly skips the text parsing, a twentieth of the cost, which counts for
    every new address a gateway meets.
    """
    if len(address) != MAC_BYTES:
        raise ContractError("a MAC address is six bytes")
    return address.hex(":")


def wifi_identifier_from_bytes(address: bytes) -> str:
    """`wifi_identifier` of an 802.11 address as transmitted."""
    return WIFI_PREFIX + _mac_from_bytes(address)


def ble_address_identifier_from_bytes(address: bytes) -> str:
    """`ble_address_identifier` of a BLE address, most significant octet first."""
    return BLE_ADDRESS_PREFIX + _mac_from_bytes(address)


def ibeacon_identifier(proximity_uuid: str | uuid.UUID, major: int, minor: int) -> str:
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise ContractError("iBeacon major and minor must be 16-bit unsigned integers")
    try:
        parsed = (
            proximity_uuid if isinstance(proximity_uuid, uuid.UUID) else uuid.UUID(proximity_uuid)
        )
    except ValueError:
        raise ContractError("iBeacon proximity UUID is not a UUID") from None
    return f"ibeacon:{parsed}:{major}:{minor}"


def eddystone_identifier(namespace_hex: str, instance_hex: str) -> str:
    namespace, instance = namespace_hex.lower(), instance_hex.lower()
    if (
        len(namespace) != 20
        or len(instance) != 12
        or not _HEX_PATTERN.fullmatch(namespace + instance)
    ):
        raise ContractError("Eddystone-UID needs a 10-byte namespace and a 6-byte instance in hex")
    return f"eddystone:{namespace}:{instance}"


def app_identifier(install_id: str) -> str:
    """The shop app's own install id, as its beacon advertises and its API reports."""
    if not _APP_ID_PATTERN.fullmatch(install_id):
        raise ContractError(
            "app install id must be 4-128 characters of A-Z, a-z, 0-9, '.', '_', '-'"
        )
    return f"app:{install_id}"


def canonical_identifier(kind: IdentifierKind, value: str) -> str:
    """Canonical identifier for the kinds a customer can hand the cloud directly."""
    match kind:
        case IdentifierKind.WIFI_ASSOCIATION | IdentifierKind.WIFI_PROBE:
            return wifi_identifier(value)
        case IdentifierKind.BLE_APP:
            return app_identifier(value)
        case IdentifierKind.BLE_ADDRESS:
            return ble_address_identifier(value)
        case IdentifierKind.BLE_IBEACON:
            proximity_uuid, major, minor = value.rsplit(":", 2)
            return ibeacon_identifier(proximity_uuid, int(major), int(minor))
        case IdentifierKind.BLE_EDDYSTONE:
            namespace, instance = value.split(":", 1)
            return eddystone_identifier(namespace, instance)
    raise ContractError(f"unknown identifier kind {kind!r}")  # pragma: no cover
