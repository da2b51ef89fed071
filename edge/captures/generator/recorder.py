"""The recorder: frames of both radios (a Wi-Fi card in monitor mode and a BLE sniffer),
each with its radio's header, written in time order to one pcapng; or the BLE radio's
alone, as an nRF Sniffer for Bluetooth LE records it, to a classic pcap."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from scapy.utils import RawPcapNgWriter, RawPcapWriter

from edge.captures.generator.frames import ble_phdr, nordic_ble_header, radiotap_header

LINKTYPE_RADIOTAP: Final = 127
LINKTYPE_BLE_PHDR: Final = 256
LINKTYPE_NORDIC_BLE: Final = 272
BLE_INTERFACE: Final = b"ble0"
#: Pseudo-header RF channel numbers of the three advertising channels 37, 38, 39.
ADVERTISING_RF_CHANNELS: Final = (0, 12, 39)
#: The same channels as the nRF Sniffer names them (channel indexes).
ADVERTISING_CHANNEL_INDEXES: Final = (37, 38, 39)
WIFI_CHANNEL_FREQUENCIES: Final = (2412, 2437, 2462)  # channels 1, 6, 11


@dataclass(frozen=True, slots=True)
class BleReception:
    """How the BLE radio heard a packet; each sniffer writes it in its own header."""

    level: int  # dBm
    channel: int  # which of the three advertising channels, 0-2
    crc_valid: bool

    def phdr(self) -> bytes:
        return ble_phdr(self.level, ADVERTISING_RF_CHANNELS[self.channel],
                        crc_valid=self.crc_valid)


@dataclass(order=True, frozen=True, slots=True)
class Record:
    at: float
    order: int
    linktype: int = field(compare=False)
    #: The whole frame for Wi-Fi; the link-layer packet for BLE (see `reception`).
    frame: bytes = field(compare=False)
    reception: BleReception | None = field(compare=False, default=None)

    def with_header(self) -> bytes:
        """The frame as the dual-radio pcapng holds it (BLE behind the RSSI pseudo-header)."""
        return self.frame if self.reception is None else self.reception.phdr() + self.frame


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
        reception = BleReception(_level(rssi), channel % 3, crc_valid)
        self._add(at, LINKTYPE_BLE_PHDR, pdu, reception)

    def _add(
        self, at: float, linktype: int, frame: bytes, reception: BleReception | None = None
    ) -> None:
        self.records.append(Record(round(at, 6), len(self.records), linktype, frame, reception))

    def write_pcapng(self, path: Path) -> int:
        writer = RawPcapNgWriter(str(path))
        writer.linktype = LINKTYPE_RADIOTAP
        writer.write_header(None)
        for record in sorted(self.records):
            interface = None if record.linktype == LINKTYPE_RADIOTAP else BLE_INTERFACE
            # scapy's pcapng writer picks the interface (and its link type) by name
            writer._write_packet(record.with_header(), linktype=record.linktype, sec=record.at,
                                 ifname=interface)
        writer.close()
        return len(self.records)

    def write_nordic_pcap(self, path: Path) -> int:
        """The BLE radio's packets alone, as Wireshark saves an nRF Sniffer capture: the
        same packets, times and signal levels as in `write_pcapng`, under the sniffer's
        own header (protocol version 3: packet counter, channel index, firmware clock)."""
        writer = RawPcapWriter(str(path), linktype=LINKTYPE_NORDIC_BLE)
        writer.write_header(None)
        written = 0
        for record in sorted(self.records):
            reception = record.reception
            if reception is None:
                continue
            seconds = int(record.at)
            microseconds = round((record.at - seconds) * 1e6)
            header = nordic_ble_header(
                len(record.frame), counter=written, level=reception.level,
                channel_index=ADVERTISING_CHANNEL_INDEXES[reception.channel],
                crc_valid=reception.crc_valid, timestamp_us=seconds * 1_000_000 + microseconds,
            )
            writer.write_packet(header + record.frame, sec=seconds, usec=microseconds)
            written += 1
        writer.close()
        return written


def _level(rssi: float) -> int:
    return max(-95, min(-25, round(rssi)))
