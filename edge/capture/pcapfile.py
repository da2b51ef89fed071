"""A small reader for pcap and pcapng capture files.

Yields raw frames with their capture time, link type and wire length, nothing
more: dissecting is the decoders' job, and skipping a generic dissector is what
makes replay fast. Both classic pcap (either byte order, micro- or nanosecond
timestamps) and pcapng (several sections and interfaces, each with its own link
type and timestamp resolution) are read. A file that is not a capture, or that
is damaged, raises `CaptureFileError` after yielding every complete frame before the
damage; one that ends in the middle of a record or block raises its subclass
`CaptureTruncatedError`.

References: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html and
https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: (capture time in epoch seconds, link type, captured bytes, length on the wire)
Frame = tuple[float, int, bytes, int]

#: No link layer we read has frames anywhere near this; a larger length means corruption.
MAX_FRAME_LEN: Final = 262_144
#: pcapng blocks hold one frame plus options; anything larger than this is corrupt.
MAX_BLOCK_LEN: Final = 16 * 1024 * 1024

_PCAP_MAGIC_US, _PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
_PCAPNG_SHB, _PCAPNG_IDB, _PCAPNG_SPB, _PCAPNG_EPB = 0x0A0D0D0A, 0x00000001, 0x00000003, 0x00000006
_PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_PCAPNG_SHB_BYTES = b"\x0a\x0d\x0d\x0a"
_OPT_END, _OPT_IF_TSRESOL, _OPT_IF_TSOFFSET = 0, 9, 14
_LINKTYPE_MASK = 0x0FFFFFFF  # the top four bits of pcap's link type field carry FCS info


class CaptureFileError(Exception):
    """The file is not a capture we can read, or is damaged; the message says where."""


class CaptureTruncatedError(CaptureFileError):
    """The file ends in the middle of a record or block (a copy cut short, a recorder
    killed mid-write); the message says which."""


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    units_per_second: int | float
    offset_s: int


def read_frames(path: Path) -> Iterator[Frame]:
    """Every frame of a pcap or pcapng file, in file order.

    The file is memory-mapped: records are sliced out without per-record reads, and a
    capture larger than memory still works.
    """
    with path.open("rb") as stream:
        try:
            data = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise CaptureFileError("empty file") from None
    with data:
        yield from _read_mapped(data)


def _read_mapped(data: mmap.mmap) -> Iterator[Frame]:
    if len(data) < 4:
        raise CaptureFileError("file too short to be a capture")
    head = data[:4]
    if head == _PCAPNG_SHB_BYTES:
        yield from _read_pcapng(data)
        return
    magic_le = struct.unpack("<I", head)[0]
    magic_be = struct.unpack(">I", head)[0]
    if magic_le in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        yield from _read_pcap(data, "<", magic_le == _PCAP_MAGIC_NS)
    elif magic_be in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        yield from _read_pcap(data, ">", magic_be == _PCAP_MAGIC_NS)
    else:
        raise CaptureFileError("not a pcap or pcapng file (unknown magic number)")


def _read_pcap(data: mmap.mmap, endian: str, nanoseconds: bool) -> Iterator[Frame]:
    size = len(data)
    if size < 24:
        raise CaptureTruncatedError("pcap file header is truncated")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & _LINKTYPE_MASK
    divisor = 1e9 if nanoseconds else 1e6
    unpack_from = struct.Struct(endian + "IIII").unpack_from
    offset, index = 24, 0
    while offset < size:
        if offset + 16 > size:
            raise CaptureTruncatedError(f"record {index} header is truncated")
        seconds, fraction, captured, wire = unpack_from(data, offset)
        if captured > MAX_FRAME_LEN:
            raise CaptureFileError(f"record {index} claims {captured} bytes: file is corrupt")
        offset += 16
        end = offset + captured
        if end > size:
            raise CaptureTruncatedError(f"record {index} data is truncated")
        yield seconds + fraction / divisor, linktype, data[offset:end], wire
        offset = end
        index += 1


def _read_pcapng(data: mmap.mmap) -> Iterator[Frame]:
    size = len(data)
    interfaces: list[_Interface] = []
    endian = "<"
    block_header = struct.Struct("<II")
    epb_header = struct.Struct("<IIIII")
    trailer = struct.Struct("<I")
    last_time = 0.0
    offset, index = 0, 0
    while offset < size:
        if offset + 12 > size:
            raise CaptureTruncatedError(f"block {index} header is truncated")
        if data[offset : offset + 4] == _PCAPNG_SHB_BYTES:
            endian = _section_byte_order(data, offset, index)
            block_header = struct.Struct(endian + "II")
            epb_header = struct.Struct(endian + "IIIII")
            trailer = struct.Struct(endian + "I")
            interfaces = []
        block_type, total = block_header.unpack_from(data, offset)
        end = offset + total
        if total < 12 or total % 4 or total > MAX_BLOCK_LEN:
            raise CaptureFileError(f"block {index} has a bad length ({total})")
        if end > size:
            raise CaptureTruncatedError(f"block {index} is truncated")
        if trailer.unpack_from(data, end - 4)[0] != total:
            raise CaptureFileError(f"block {index} lengths disagree")
        if block_type == _PCAPNG_EPB:
            if total < 32:
                raise CaptureFileError(f"block {index} (enhanced packet) is too short")
            interface_id, high, low, captured, wire = epb_header.unpack_from(data, offset + 8)
            start = offset + 28
            if start + captured > end - 4:
                raise CaptureFileError(
                    f"block {index} (enhanced packet) claims more data than it holds"
                )
            interface = _interface(interfaces, interface_id, index)
            last_time = ((high << 32) | low) / interface.units_per_second + interface.offset_s
            yield last_time, interface.linktype, data[start : start + captured], wire
        elif block_type == _PCAPNG_IDB:
            interfaces.append(_parse_interface(data[offset + 8 : end - 4], endian, index))
        elif block_type == _PCAPNG_SPB:
            yield _parse_simple_packet(
                data[offset + 8 : end - 4], endian, interfaces, last_time, index
            )
        elif block_type == _PCAPNG_SHB and total < 28:
            raise CaptureFileError(f"block {index} (section header) is too short")
        # other blocks (name resolution, statistics, custom...) carry no frames
        offset = end
        index += 1


def _section_byte_order(data: mmap.mmap, offset: int, index: int) -> str:
    magic = data[offset + 8 : offset + 12]
    if struct.unpack("<I", magic)[0] == _PCAPNG_BYTE_ORDER_MAGIC:
        return "<"
    if struct.unpack(">I", magic)[0] == _PCAPNG_BYTE_ORDER_MAGIC:
        return ">"
    raise CaptureFileError(f"block {index} (section header) has no byte-order magic")


def _parse_interface(body: bytes, endian: str, index: int) -> _Interface:
    if len(body) < 8:
        raise CaptureFileError(f"block {index} (interface description) is too short")
    linktype = struct.unpack_from(endian + "H", body)[0]
    units: int | float = 1_000_000
    offset_s = 0
    for code, value in _options(body, 8, endian, index):
        if code == _OPT_IF_TSRESOL and len(value) >= 1:
            exponent = value[0] & 0x7F
            units = 2**exponent if value[0] & 0x80 else 10**exponent
        elif code == _OPT_IF_TSOFFSET and len(value) >= 8:
            offset_s = struct.unpack_from(endian + "q", value)[0]
    return _Interface(linktype, units, offset_s)


def _options(body: bytes, start: int, endian: str, index: int) -> Iterator[tuple[int, bytes]]:
    offset = start
    header = struct.Struct(endian + "HH")
    while offset + 4 <= len(body):
        code, length = header.unpack_from(body, offset)
        if code == _OPT_END:
            return
        value = body[offset + 4 : offset + 4 + length]
        if len(value) < length:
            raise CaptureFileError(f"block {index} has a truncated option")
        yield code, value
        offset += 4 + length + (-length % 4)


def _interface(interfaces: list[_Interface], interface_id: int, index: int) -> _Interface:
    if interface_id >= len(interfaces):
        raise CaptureFileError(f"block {index} names undeclared interface {interface_id}")
    return interfaces[interface_id]


def _parse_simple_packet(
    body: bytes, endian: str, interfaces: list[_Interface], last_time: float, index: int
) -> Frame:
    """A simple packet block has no timestamp: it takes the latest time seen before it."""
    if len(body) < 4:
        raise CaptureFileError(f"block {index} (simple packet) is too short")
    wire = struct.unpack_from(endian + "I", body)[0]
    interface = _interface(interfaces, 0, index)
    return last_time, interface.linktype, body[4 : 4 + min(wire, len(body) - 4)], wire
