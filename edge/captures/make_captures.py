"""Regenerate the shipped captures, byte for byte: `python -m edge.captures.make_captures`.

Every frame is built with scapy (radiotap, 802.11, BLE link layer, AD structures,
iBeacon and Eddystone payloads, FCS and BLE CRC), so the gateway's own decoders are
tested against an independent encoder. Building a scapy packet costs about a
millisecond, so parts that repeat (radiotap headers per signal level, a device's
advertising PDU) are built once and reused. Randomness comes from fixed seeds; the
stories are described in `edge.captures`.
"""

from __future__ import annotations

import argparse
import math
import random
import struct
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
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
from scapy.utils import RawPcapNgWriter, RawPcapWriter

from edge.captures import (
    BUSY_START,
    BUSY_STORE_CAPTURE,
    DEMO_ANA_INSTALL_ID,
    DEMO_APP_IBEACON_UUID,
    DEMO_APP_SERVICE_UUID,
    DEMO_CAPTURE,
    DEMO_EDDYSTONE_NAMESPACE,
    DEMO_GUEST_SSID,
    DEMO_START,
    GARBAGE_FRAMES_CAPTURE,
    JUAN_INSTALL_ID,
    NOT_A_CAPTURE,
    TRUNCATED_CAPTURE,
)

DEMO_SEED: Final = 20240302
BUSY_SEED: Final = 20240302_17

LINKTYPE_RADIOTAP: Final = 127
LINKTYPE_BLE_PHDR: Final = 256
BLE_INTERFACE: Final = b"ble0"

ADVERTISING_ACCESS_ADDRESS: Final = 0x8E89BED6
#: Pseudo-header RF channel numbers of the three advertising channels 37, 38, 39.
ADVERTISING_RF_CHANNELS: Final = (0, 12, 39)
WIFI_CHANNEL_FREQUENCIES: Final = (2412, 2437, 2462)  # channels 1, 6, 11
SUPPORTED_RATES: Final = b"\x82\x84\x8b\x96\x0c\x12\x18\x24"
APPLE: Final = 0x004C

#: A neighbour shop's iBeacon, and the proximity UUID of the store's own shelf tags.
NEIGHBOUR_IBEACON_UUID: Final = uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
STORE_TAG_IBEACON_UUID: Final = uuid.UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
GUEST_AP: Final = "00:1b:2f:5a:00:01"
STAFF_AP: Final = "00:1b:2f:5a:00:02"
STAFF_SSID: Final = "Vitrina-Staff"
#: Vendor OUIs for phones that still probe with their burned-in (global) address.
GLOBAL_OUIS: Final = (
    (0x3C, 0x5A, 0xB4), (0x00, 0x16, 0x32), (0xF0, 0x18, 0x98), (0x8C, 0x85, 0x90),
)

#: Resolvable private addresses and randomized probe MACs rotate this often (iOS, Android).
ROTATION_S: Final = 900.0
BUSY_DURATION_S: Final = 1500.0
BUSY_PHONES: Final = 180
BUSY_IBEACON_TAGS: Final = 8
BUSY_EDDYSTONE_TAGS: Final = 4
#: Share of frames a sniffer records damaged (bad FCS / bad CRC) in a crowded band.
CORRUPTION_RATE: Final = 0.003


# ---------------------------------------------------------------- frame builders


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


# ---------------------------------------------------------------- writing


@dataclass(order=True, frozen=True, slots=True)
class Record:
    at: float
    order: int
    linktype: int = field(compare=False)
    frame: bytes = field(compare=False)


class Recorder:
    """Collects frames of both radios, then writes them in time order."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.sequence: dict[str, int] = {}

    def next_sequence(self, mac: str) -> int:
        value = self.sequence.get(mac, 0)
        self.sequence[mac] = value + 1
        return value

    def wifi(
        self, at: float, rssi: float, channel: int, frame: bytes, *, bad_fcs: bool = False
    ) -> None:
        frequency = WIFI_CHANNEL_FREQUENCIES[channel % 3]
        header = radiotap_header(_level(rssi), frequency, bad_fcs=bad_fcs)
        self._add(at, LINKTYPE_RADIOTAP, header + frame)

    def ble(
        self, at: float, rssi: float, channel: int, pdu: bytes, *, crc_valid: bool = True
    ) -> None:
        phdr = ble_phdr(_level(rssi), ADVERTISING_RF_CHANNELS[channel % 3], crc_valid=crc_valid)
        self._add(at, LINKTYPE_BLE_PHDR, phdr + pdu)

    def _add(self, at: float, linktype: int, frame: bytes) -> None:
        self.records.append(Record(round(at, 6), len(self.records), linktype, frame))

    def write_pcapng(self, path: Path) -> int:
        writer = RawPcapNgWriter(str(path))
        writer.linktype = LINKTYPE_RADIOTAP
        writer.write_header(None)
        for record in sorted(self.records):
            interface = None if record.linktype == LINKTYPE_RADIOTAP else BLE_INTERFACE
            # scapy's pcapng writer picks the interface (and its link type) by name
            writer._write_packet(record.frame, linktype=record.linktype, sec=record.at,
                                 ifname=interface)
        writer.close()
        return len(self.records)


def _level(rssi: float) -> int:
    return max(-95, min(-25, round(rssi)))


# ---------------------------------------------------------------- addresses


def wifi_random_mac(rng: random.Random) -> str:
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{octet:02x}" for octet in octets)


def wifi_global_mac(rng: random.Random) -> str:
    oui = rng.choice(GLOBAL_OUIS)
    return ":".join(f"{octet:02x}" for octet in (*oui, *(rng.randrange(256) for _ in range(3))))


def ble_address(rng: random.Random, top_bits: int) -> str:
    """top_bits: 0b01 resolvable private, 0b11 static random, 0b00 non-resolvable."""
    octets = [rng.randrange(256) for _ in range(6)]
    octets[0] = (top_bits << 6) | (octets[0] & 0x3F)
    return ":".join(f"{octet:02x}" for octet in octets)


def ble_public_address(rng: random.Random) -> str:
    return wifi_global_mac(rng)


# ---------------------------------------------------------------- demo story


def _approach(t: float, start: float, end: float, peak: float, far: float = -88.0) -> float:
    """RSSI of someone who walks in over a minute, stays near `peak`, and walks out."""
    inside = min(t - start, end - t)
    if inside >= 60:
        return peak
    return far + (peak - far) * max(inside, 0.0) / 60


def _ticks(rng: random.Random, start: float, end: float, period: float) -> Iterable[float]:
    t = start + rng.uniform(0, period)
    while t < end:
        yield t
        t += period * rng.uniform(0.7, 1.3)


def build_demo(recorder: Recorder) -> None:
    rng = random.Random(DEMO_SEED)
    t0 = DEMO_START
    tag = "c3:a1:00:00:00:01"  # the store's Eddystone tag (public address, a fixed device)
    for index, t in enumerate(_ticks(rng, 0, 300, 2.0)):
        recorder.ble(t0 + t, -70 + rng.gauss(0, 2), index,
                     eddystone_uid_advert(tag, DEMO_EDDYSTONE_NAMESPACE, "000000000001"))
    neighbour = ble_address(rng, 0b11)
    for index, t in enumerate(_ticks(rng, 0, 300, 2.0)):
        recorder.ble(t0 + t, -84 + rng.gauss(0, 2), index,
                     ibeacon_advert(neighbour, NEIGHBOUR_IBEACON_UUID, 100, 7))
    for t in _ticks(rng, 0, 300, 10.0):
        recorder.wifi(t0 + t, -48, 0, ap_beacon(GUEST_AP, DEMO_GUEST_SSID.encode(),
                                                recorder.next_sequence(GUEST_AP)))

    # Juan: the shop app advertises his install id; probes and guest Wi-Fi use random MACs.
    juan_ble = ble_address(rng, 0b01)
    juan_probe_mac, juan_network_mac = wifi_random_mac(rng), wifi_random_mac(rng)
    indication, response = app_adverts(juan_ble, JUAN_INSTALL_ID)
    for index, t in enumerate(_ticks(rng, 20, 200, 1.0)):
        rssi = _approach(t, 20, 200, -52 if t < 100 else -64) + rng.gauss(0, 2)
        recorder.ble(t0 + t, rssi, index, indication)
        recorder.ble(t0 + t + 0.0004, rssi, index, response)
    for t in _ticks(rng, 25, 200, 30.0):
        for channel in range(3):
            rssi = _approach(t, 20, 200, -55) + rng.gauss(0, 2)
            recorder.wifi(t0 + t + channel * 0.02, rssi, channel,
                          probe_request(juan_probe_mac, recorder.next_sequence(juan_probe_mac)))
    recorder.wifi(t0 + 60, -50, 0, association_request(
        juan_network_mac, GUEST_AP, DEMO_GUEST_SSID.encode(),
        recorder.next_sequence(juan_network_mac)))
    for t in _ticks(rng, 61, 195, 5.0):
        recorder.wifi(t0 + t, -58, 0, data_frame(juan_network_mac, GUEST_AP,
                                                 recorder.next_sequence(juan_network_mac)))

    # Ana: the app's iBeacon, install id in major/minor.
    ana = ble_address(rng, 0b01)
    major, minor = int(DEMO_ANA_INSTALL_ID[:4], 16), int(DEMO_ANA_INSTALL_ID[4:], 16)
    for index, t in enumerate(_ticks(rng, 40, 260, 1.0)):
        recorder.ble(t0 + t, _approach(t, 40, 260, -62) + rng.gauss(0, 2), index,
                     ibeacon_advert(ana, DEMO_APP_IBEACON_UUID, major, minor))

    # Pedro: an older phone with its burned-in MAC; it scans actively and joins the guest Wi-Fi.
    pedro = wifi_global_mac(rng)
    for t in _ticks(rng, 90, 240, 20.0):
        for channel in range(3):
            recorder.wifi(t0 + t + channel * 0.02, _approach(t, 90, 240, -60) + rng.gauss(0, 2),
                          channel, probe_request(pedro, recorder.next_sequence(pedro)))
    recorder.wifi(t0 + 120, -58, 1, association_request(
        pedro, GUEST_AP, DEMO_GUEST_SSID.encode(), recorder.next_sequence(pedro)))
    recorder.wifi(t0 + 180, -61, 1, association_request(
        pedro, GUEST_AP, DEMO_GUEST_SSID.encode(), recorder.next_sequence(pedro),
        reassociation=True))
    recorder.ble(t0 + 150, -61, 0, scan_request(ble_address(rng, 0b01), juan_ble))

    # Passers-by: a fresh random MAC for every probe burst.
    for passer in range(3):
        for t in _ticks(rng, 0, 300, 45.0 + passer * 10):
            mac = wifi_random_mac(rng)
            for channel in range(3):
                recorder.wifi(t0 + t + channel * 0.02, -80 + rng.gauss(0, 3), channel,
                              probe_request(mac, recorder.next_sequence(mac)))


# ---------------------------------------------------------------- busy store


@dataclass(frozen=True, slots=True)
class Visitor:
    index: int
    arrive: float
    leave: float
    peak: float
    ble_style: str | None  # "apple" | "google" | "band" | "app" | None
    ble_public: bool
    ble_period: float
    probes: str | None  # "random" | "global" | None
    probe_period: float
    joins_wifi: bool


def _visitors(rng: random.Random) -> list[Visitor]:
    visitors = []
    for index in range(BUSY_PHONES):
        stay = rng.uniform(240, 1300)
        arrive = rng.uniform(-stay + 120, BUSY_DURATION_S - 120)
        roll = rng.random()
        ble_style = (
            "apple" if roll < 0.50 else "google" if roll < 0.78 else "band" if roll < 0.84
            else "app" if roll < 0.90 else None
        )
        probe_roll = rng.random()
        probes = "random" if probe_roll < 0.12 else "global" if probe_roll < 0.20 else None
        if ble_style is None and probes is None:
            probes = "random"
        visitors.append(Visitor(
            index=index,
            arrive=arrive,
            leave=arrive + stay,
            peak=rng.uniform(-74, -50),
            ble_style=ble_style,
            ble_public=ble_style == "band" and rng.random() < 0.5,
            ble_period=rng.uniform(1.3, 2.6),
            probes=probes,
            probe_period=rng.uniform(40, 75),
            joins_wifi=rng.random() < 0.25,
        ))
    return visitors


class _Rotating:
    """An address that changes every ROTATION_S, at a phase of its own."""

    def __init__(self, rng: random.Random, make: Any) -> None:
        self.rng, self.make = rng, make
        self.phase = rng.uniform(0, ROTATION_S)
        self.addresses: dict[int, str] = {}

    def at(self, t: float) -> str:
        slot = math.floor((t + self.phase) / ROTATION_S)
        if slot not in self.addresses:
            self.addresses[slot] = self.make(self.rng)
        return self.addresses[slot]


def _visitor_frames(recorder: Recorder, visitor: Visitor, corrupt: random.Random) -> None:
    rng = random.Random(f"{BUSY_SEED}-{visitor.index}")
    t0 = BUSY_START
    start, end = max(visitor.arrive, 0.0), min(visitor.leave, BUSY_DURATION_S)

    def rssi(t: float) -> float:
        return _approach(t, visitor.arrive, visitor.leave, visitor.peak) + rng.gauss(0, 3)

    if visitor.ble_style is not None:
        if visitor.ble_public:
            fixed = ble_public_address(rng)
            address: Any = lambda _t: fixed  # noqa: E731
        else:
            address = _Rotating(rng, lambda r: ble_address(r, 0b01)).at
        install = f"{rng.randrange(1 << 32):08x}"
        for index, t in enumerate(_ticks(rng, start, end, visitor.ble_period)):
            if visitor.ble_style == "app":
                pdu = ibeacon_advert(address(t), DEMO_APP_IBEACON_UUID,
                                     int(install[:4], 16), int(install[4:], 16))
            else:
                pdu = phone_advert(address(t), visitor.ble_style,
                                   random_address=not visitor.ble_public)
            recorder.ble(t0 + t, rssi(t), index, pdu, crc_valid=corrupt.random() >= CORRUPTION_RATE)
    if visitor.probes is not None:
        if visitor.probes == "global":
            fixed_mac = wifi_global_mac(rng)
            mac: Any = lambda _t: fixed_mac  # noqa: E731
        else:
            mac = _Rotating(rng, wifi_random_mac).at
        for t in _ticks(rng, start, end, visitor.probe_period):
            station = mac(t)
            for channel in range(rng.choice((3, 4, 5, 6))):
                recorder.wifi(t0 + t + channel * 0.015, rssi(t), channel,
                              repeated_frame(probe_request, station, 0),
                              bad_fcs=corrupt.random() < CORRUPTION_RATE)
        if visitor.joins_wifi and end - start > 90:
            station = mac(start + 30) if visitor.probes == "global" else wifi_random_mac(rng)
            recorder.wifi(t0 + start + 30, rssi(start + 30), 1, association_request(
                station, GUEST_AP, DEMO_GUEST_SSID.encode(), recorder.next_sequence(station)))
            for t in _ticks(rng, start + 31, end, 20.0):
                recorder.wifi(t0 + t, rssi(t), 1,
                              repeated_frame(data_frame, station, GUEST_AP, 0))


def build_busy_store(recorder: Recorder) -> None:
    rng = random.Random(BUSY_SEED)
    corrupt = random.Random(BUSY_SEED + 1)
    t0 = BUSY_START
    for visitor in _visitors(rng):
        _visitor_frames(recorder, visitor, corrupt)
    for tag in range(BUSY_IBEACON_TAGS):
        address, level = ble_address(rng, 0b11), rng.uniform(-80, -62)
        for index, t in enumerate(_ticks(rng, 0, BUSY_DURATION_S, 2.5)):
            recorder.ble(t0 + t, level + rng.gauss(0, 2), index,
                         ibeacon_advert(address, STORE_TAG_IBEACON_UUID, 1, tag + 1))
    for tag in range(BUSY_EDDYSTONE_TAGS):
        address, level = ble_public_address(rng), rng.uniform(-80, -62)
        for index, t in enumerate(_ticks(rng, 0, BUSY_DURATION_S, 2.5)):
            recorder.ble(t0 + t, level + rng.gauss(0, 2), index,
                         eddystone_uid_advert(address, DEMO_EDDYSTONE_NAMESPACE, f"{tag + 1:012x}"))
    for bssid, ssid in ((GUEST_AP, DEMO_GUEST_SSID), (STAFF_AP, STAFF_SSID)):
        for t in _ticks(rng, 0, BUSY_DURATION_S, 10.0):
            recorder.wifi(t0 + t, -45 + rng.gauss(0, 2), 0,
                          repeated_frame(ap_beacon, bssid, ssid.encode(), 0))


# ---------------------------------------------------------------- damaged files


def write_malformed(truncated: Path, garbage: Path, not_capture: Path) -> None:
    """Damaged inputs for the tests; sizes and contents are fixed, no randomness."""
    recorder = Recorder()
    for index in range(10):
        recorder.wifi(DEMO_START + index, -60, index,
                      probe_request("02:00:5e:00:00:0a", index))
    writer = RawPcapWriter(str(truncated), linktype=LINKTYPE_RADIOTAP)
    writer.write_header(None)
    for record in recorder.records:
        writer.write_packet(record.frame, sec=int(record.at), usec=0)
    writer.close()
    content = truncated.read_bytes()
    truncated.write_bytes(content[: len(content) - 20])  # the last record loses its tail

    frames = [
        b"",  # empty
        b"\x00\x00",  # shorter than a radiotap header
        b"\x01\x00\x08\x00\x00\x00\x00\x00" + bytes(24),  # radiotap version 1
        b"\x00\x00\xff\x00\x00\x00\x00\x00",  # header longer than the frame
        bytes(range(256)) * 2,  # noise
        radiotap_header(-60, 2412) + b"\x40\x00",  # 802.11 header cut short
    ]
    writer = RawPcapWriter(str(garbage), linktype=LINKTYPE_RADIOTAP)
    writer.write_header(None)
    for index, frame in enumerate(frames):
        writer.write_packet(frame, sec=int(DEMO_START) + index, usec=0)
    writer.close()
    not_capture.write_bytes(b"This file only has a capture's name.\n" * 4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=None,
                        help="directory to write into (default: next to this script)")
    args = parser.parse_args(argv)

    def target(path: Path) -> Path:
        return path if args.out is None else args.out / path.name

    demo = Recorder()
    build_demo(demo)
    print(f"{target(DEMO_CAPTURE)}: {demo.write_pcapng(target(DEMO_CAPTURE))} frames")
    busy = Recorder()
    build_busy_store(busy)
    print(f"{target(BUSY_STORE_CAPTURE)}: {busy.write_pcapng(target(BUSY_STORE_CAPTURE))} frames")
    write_malformed(target(TRUNCATED_CAPTURE), target(GARBAGE_FRAMES_CAPTURE),
                    target(NOT_A_CAPTURE))


if __name__ == "__main__":
    main()
