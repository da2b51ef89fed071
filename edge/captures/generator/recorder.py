"""The recorder: frames of both radios (a Wi-Fi card in monitor mode and a BLE sniffer),
each with its radio's header, written in time order to one pcapng."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from scapy.utils import RawPcapNgWriter

from edge.captures.generator.frames import ble_phdr, radiotap_header

LINKTYPE_RADIOTAP: Final = 127
LINKTYPE_BLE_PHDR: Final = 256
BLE_INTERFACE: Final = b"ble0"
#: Pseudo-header RF channel numbers of the three advertising channels 37, 38, 39.
ADVERTISING_RF_CHANNELS: Final = (0, 12, 39)
WIFI_CHANNEL_FREQUENCIES: Final = (2412, 2437, 2462)  # channels 1, 6, 11


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
