"""Frame builders. Every frame is built with scapy (radiotap, 802.11, BLE link layer, AD
structures, iBeacon and Eddystone payloads, FCS and BLE CRC), so the gateway's own
decoders are tested against an independent encoder. Building a scapy packet costs about
a millisecond, so parts that repeat (radiotap headers per signal level, a device's
advertising PDU) are built once and reused."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from scapy.layers.bluetooth import (
    EIR_CompleteList16BitServiceUUIDs,
    EIR_CompleteList128BitServiceUUIDs,
    EIR_CompleteLocalName,
    EIR_Flags,
    EIR_Hdr,
    EIR_Manufacturer_Specific_Data,
    EIR_ServiceData16BitUUID,
    EIR_ServiceData128BitUUID,
)
from scapy.layers.bluetooth4LE import (
    BTLE,
    BTLE_ADV,
    BTLE_ADV_IND,
    BTLE_ADV_NONCONN_IND,
    BTLE_RF,
    BTLE_SCAN_REQ,
    BTLE_SCAN_RSP,
)
from scapy.layers.dot11 import (
    Dot11,
    Dot11AssoReq,
    Dot11Beacon,
    Dot11Elt,
    Dot11FCS,
    Dot11ProbeReq,
    Dot11ReassoReq,
    RadioTap,
)

from edge.captures import DEMO_APP_SERVICE_UUID

ADVERTISING_ACCESS_ADDRESS: Final = 0x8E89BED6
SUPPORTED_RATES: Final = b"\x82\x84\x8b\x96\x0c\x12\x18\x24"
APPLE: Final = 0x004C


@lru_cache(maxsize=4096)
def radiotap_header(rssi: int, frequency: int, *, fcs: bool = True, bad_fcs: bool = False) -> bytes:
    flags = "+".join(name for name, on in (("FCS", fcs), ("badFCS", bad_fcs)) if on) or 0
    header = RadioTap(
        present="Flags+Rate+Channel+dBm_AntSignal+Antenna",
        Flags=flags,
        Rate=2,
        ChannelFrequency=frequency,
        ChannelFlags="CCK+2GHz",
        dBm_AntSignal=rssi,
        Antenna=0,
    )
    return bytes(header)


def _dot11(fcs: bool, **fields: Any) -> Any:
    return Dot11FCS(**fields) if fcs else Dot11(**fields)


def probe_request(mac: str, sequence: int, ssid: bytes = b"", *, fcs: bool = True) -> bytes:
    frame = (
        _dot11(fcs, type=0, subtype=4, addr1="ff:ff:ff:ff:ff:ff", addr2=mac,
               addr3="ff:ff:ff:ff:ff:ff", SC=(sequence & 0xFFF) << 4)
        / Dot11ProbeReq()
        / Dot11Elt(ID=0, info=ssid)
        / Dot11Elt(ID=1, info=SUPPORTED_RATES)
    )
    return bytes(frame)


def association_request(
    mac: str, bssid: str, ssid: bytes, sequence: int, *, reassociation: bool = False
) -> bytes:
    body = (
        Dot11ReassoReq(cap="ESS+privacy+short-slot", listen_interval=10, current_AP=bssid)
        if reassociation
        else Dot11AssoReq(cap="ESS+privacy+short-slot", listen_interval=10)
    )
    frame = (
        Dot11FCS(type=0, subtype=2 if reassociation else 0, addr1=bssid, addr2=mac, addr3=bssid,
                 SC=(sequence & 0xFFF) << 4)
        / body
        / Dot11Elt(ID=0, info=ssid)
        / Dot11Elt(ID=1, info=SUPPORTED_RATES)
    )
    return bytes(frame)


def ap_beacon(bssid: str, ssid: bytes, sequence: int) -> bytes:
    frame = (
        Dot11FCS(type=0, subtype=8, addr1="ff:ff:ff:ff:ff:ff", addr2=bssid, addr3=bssid,
                 SC=(sequence & 0xFFF) << 4)
        / Dot11Beacon(cap="ESS+privacy+short-slot", beacon_interval=100)
        / Dot11Elt(ID=0, info=ssid)
        / Dot11Elt(ID=1, info=SUPPORTED_RATES)
    )
    return bytes(frame)


def data_frame(station: str, bssid: str, sequence: int) -> bytes:
    frame = Dot11FCS(type=2, subtype=0, FCfield="to_DS", addr1=bssid, addr2=station, addr3=bssid,
                     SC=(sequence & 0xFFF) << 4) / (b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + bytes(40))
    return bytes(frame)


@lru_cache(maxsize=4096)
def ble_phdr(rssi: int, rf_channel: int, *, crc_valid: bool = True) -> bytes:
    header = BTLE_RF(
        rf_channel=rf_channel,
        signal=rssi,
        noise=-100,
        dewhitened=1,
        sig_power_valid=1,
        noise_power_valid=1,
        crc_checked=1,
        crc_valid=1 if crc_valid else 0,
    )
    return bytes(header)


#: The nRF Sniffer's packet header (protocol version 3) for an advertising-channel packet.
NORDIC_BOARD_ID: Final = 0
NORDIC_PROTOCOL_VERSION: Final = 3
NORDIC_EVENT_PACKET_ADVERTISING: Final = 0x02
NORDIC_EVENT_HEADER_LEN: Final = 10
_NORDIC_HEADER = struct.Struct("<BHBHBBBBBHI")


def nordic_ble_header(
    packet_len: int, *, counter: int, level: int, channel_index: int, crc_valid: bool,
    timestamp_us: int,
) -> bytes:
    """The 17 bytes an nRF Sniffer (protocol version 3) puts before a link-layer packet.

    Packed from the published layout (Wireshark's packet-nordic_ble.c) rather than with
    scapy: scapy's nRF Sniffer layer does not build (its `post_build` reads a field it
    lacks), and its RSSI field is a signed byte where the sniffer writes the magnitude
    (Wireshark shows minus the byte). Tests read these headers back with scapy's layer.
    """
    return _NORDIC_HEADER.pack(
        NORDIC_BOARD_ID,
        NORDIC_EVENT_HEADER_LEN + packet_len,  # payload length: everything after 7 bytes
        NORDIC_PROTOCOL_VERSION,
        counter & 0xFFFF,
        NORDIC_EVENT_PACKET_ADVERTISING,
        NORDIC_EVENT_HEADER_LEN,
        0x01 if crc_valid else 0x00,  # CRC OK; PHY 0 (LE 1M), as legacy adverts use
        channel_index,
        -level,  # the RSSI sample: the signal is minus this
        0,  # event counter: a connection's, none on advertising channels
        timestamp_us & 0xFFFFFFFF,
    )


def _eir(*elements: Any) -> list[Any]:
    return [EIR_Hdr() / element for element in elements]


def _adv_pdu(pdu: Any, *, random_address: bool, crc: int | None = None) -> bytes:
    packet = BTLE(access_addr=ADVERTISING_ACCESS_ADDRESS, crc=crc) / BTLE_ADV(
        TxAdd=1 if random_address else 0
    ) / pdu
    return bytes(packet)


def ibeacon_data(proximity_uuid: uuid.UUID, major: int, minor: int, tx_power: int = -59) -> bytes:
    return b"\x02\x15" + proximity_uuid.bytes + struct.pack(">HHb", major, minor, tx_power)


@lru_cache(maxsize=8192)
def ibeacon_advert(address: str, proximity_uuid: uuid.UUID, major: int, minor: int) -> bytes:
    data = _eir(
        EIR_Flags(flags=["general_disc_mode", "br_edr_not_supported"]),
        EIR_Manufacturer_Specific_Data(company_id=APPLE)
        / ibeacon_data(proximity_uuid, major, minor),
    )
    return _adv_pdu(BTLE_ADV_NONCONN_IND(AdvA=address, data=data), random_address=True)


@lru_cache(maxsize=1024)
def eddystone_uid_advert(address: str, namespace_hex: str, instance_hex: str) -> bytes:
    frame = b"\x00\xee" + bytes.fromhex(namespace_hex) + bytes.fromhex(instance_hex) + b"\x00\x00"
    data = _eir(
        EIR_Flags(flags=["general_disc_mode", "br_edr_not_supported"]),
        EIR_CompleteList16BitServiceUUIDs(svc_uuids=[0xFEAA]),
        EIR_ServiceData16BitUUID(svc_uuid=0xFEAA) / frame,
    )
    return _adv_pdu(BTLE_ADV_NONCONN_IND(AdvA=address, data=data), random_address=False)


@lru_cache(maxsize=8192)
def phone_advert(address: str, style: str, *, random_address: bool = True) -> bytes:
    """What a phone without a beacon app advertises: Apple Nearby Info, or Google service data."""
    if style == "apple":
        data = _eir(
            EIR_Flags(flags=["general_disc_mode"]),
            EIR_Manufacturer_Specific_Data(company_id=APPLE) / bytes.fromhex("1005011c1a2b3c"),
        )
        pdu: Any = BTLE_ADV_IND(AdvA=address, data=data)
    elif style == "google":
        data = _eir(
            EIR_Flags(flags=["general_disc_mode", "br_edr_not_supported"]),
            EIR_ServiceData16BitUUID(svc_uuid=0xFEF3) / bytes.fromhex("4a17230a0b0c0d"),
        )
        pdu = BTLE_ADV_IND(AdvA=address, data=data)
    else:  # a wearable that names itself
        data = _eir(
            EIR_Flags(flags=["general_disc_mode", "br_edr_not_supported"]),
            EIR_CompleteLocalName(local_name=b"Band 7"),
        )
        pdu = BTLE_ADV_IND(AdvA=address, data=data)
    return _adv_pdu(pdu, random_address=random_address)


@lru_cache(maxsize=64)
def app_adverts(address: str, install_id: str) -> tuple[bytes, bytes]:
    """The shop app on Android: its service UUID in ADV_IND, its install id in SCAN_RSP."""
    service = uuid.UUID(DEMO_APP_SERVICE_UUID)
    indication = _eir(
        EIR_Flags(flags=["general_disc_mode", "br_edr_not_supported"]),
        EIR_CompleteList128BitServiceUUIDs(svc_uuids=[service]),
    )
    response = _eir(EIR_ServiceData128BitUUID(svc_uuid=service) / install_id.encode("ascii"))
    return (
        _adv_pdu(BTLE_ADV_IND(AdvA=address, data=indication), random_address=True),
        _adv_pdu(BTLE_SCAN_RSP(AdvA=address, data=response), random_address=True),
    )


def scan_request(scanner: str, advertiser: str) -> bytes:
    return _adv_pdu(BTLE_SCAN_REQ(ScanA=scanner, AdvA=advertiser), random_address=True)


@lru_cache(maxsize=4096)
def repeated_frame(builder: Callable[..., bytes], *args: Any) -> bytes:
    """One build per distinct frame: the busy store repeats a station's bytes (sequence number
    included, which nothing reads), as building each of its thousands of frames anew would
    triple the time to regenerate it."""
    return builder(*args)
