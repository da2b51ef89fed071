"""The capture file reader: pcap and pcapng variants, cross-checked with scapy's readers,
and every way a file can be damaged."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.utils import RawPcapNgReader, RawPcapReader, RawPcapWriter

from edge.capture.pcapfile import (
    MAX_FRAME_LEN,
    CaptureFileError,
    CaptureTruncatedError,
    Frame,
    read_frames,
)
from edge.captures import BUSY_STORE_CAPTURE, DEMO_CAPTURE

FRAMES = [b"\x00\x01\x02", b"", b"radiotap and more" * 3]
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def pcap_bytes(
    frames: list[bytes], *, endian: str = "<", nanoseconds: bool = False, linktype: int = 127,
    start: float = 1_709_373_600.0, wire_extra: int = 0,
) -> bytes:
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    units = 1_000_000_000 if nanoseconds else 1_000_000
    for index, frame in enumerate(frames):
        seconds, fraction = int(start) + index, (index * 1234) % units
        out += struct.pack(endian + "IIII", seconds, fraction, len(frame), len(frame) + wire_extra)
        out += frame
    return out


def block(block_type: int, body: bytes, endian: str = "<") -> bytes:
    body += b"\x00" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack(endian + "II", block_type, total) + body + struct.pack(endian + "I", total)


def option(code: int, value: bytes, endian: str = "<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def section(endian: str = "<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def interface(linktype: int, endian: str = "<", options: bytes = b"") -> bytes:
    body = struct.pack(endian + "HHI", linktype, 0, 262144)
    if options:
        body += options + struct.pack(endian + "HH", 0, 0)
    return block(1, body, endian)


def enhanced(interface_id: int, ticks: int, frame: bytes, endian: str = "<",
             wire: int | None = None) -> bytes:
    body = struct.pack(endian + "IIIII", interface_id, ticks >> 32, ticks & 0xFFFFFFFF, len(frame),
                       len(frame) if wire is None else wire) + frame
    return block(6, body, endian)


def write(tmp_path: Path, content: bytes, name: str = "capture.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def read_all(path: Path) -> list[Frame]:
    return list(read_frames(path))


# ---------------------------------------------------------------- classic pcap


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_classic_pcap_in_either_byte_order_and_resolution(
    tmp_path: Path, endian: str, nanoseconds: bool
) -> None:
    frames = read_all(write(tmp_path, pcap_bytes(FRAMES, endian=endian, nanoseconds=nanoseconds)))
    divisor = 1e9 if nanoseconds else 1e6
    assert frames == [
        (1_709_373_600 + i + ((i * 1234) % int(divisor)) / divisor, 127, frame, len(frame))
        for i, frame in enumerate(FRAMES)
    ]


def test_the_link_type_drops_fcs_information_bits(tmp_path: Path) -> None:
    frames = read_all(write(tmp_path, pcap_bytes(FRAMES[:1], linktype=0x1000_0000 | 256)))
    assert frames[0][1] == 256


def test_snap_length_cuts_are_reported_through_the_wire_length(tmp_path: Path) -> None:
    frames = read_all(write(tmp_path, pcap_bytes(FRAMES[:1], wire_extra=10)))
    assert frames[0][3] == len(FRAMES[0]) + 10


def test_agrees_with_scapys_pcap_reader(tmp_path: Path) -> None:
    path = tmp_path / "scapy.pcap"
    writer = RawPcapWriter(str(path), linktype=256)
    writer.write_header(None)
    for index, frame in enumerate(FRAMES):
        writer.write_packet(frame, sec=1_700_000_000 + index, usec=index * 10)
    writer.close()
    ours = read_all(path)
    theirs = [(data, meta) for data, meta in RawPcapReader(str(path))]
    assert [frame for _, _, frame, _ in ours] == [data for data, _ in theirs]
    assert [at for at, _, _, _ in ours] == [meta.sec + meta.usec / 1e6 for _, meta in theirs]


# ---------------------------------------------------------------- pcapng


@pytest.mark.parametrize("capture", [DEMO_CAPTURE, BUSY_STORE_CAPTURE], ids=["demo", "busy"])
def test_shipped_captures_agree_with_scapys_pcapng_reader(capture: Path) -> None:
    ours = read_all(capture)
    reader = RawPcapNgReader(str(capture))
    theirs: list[tuple[bytes, Any]] = list(reader)  # pcapng metadata: not in scapy's types
    reader.close()
    assert len(ours) == len(theirs) > 1000
    for (at, linktype, frame, wire), (data, meta) in zip(ours, theirs, strict=True):
        assert frame == data
        assert wire == meta.wirelen
        assert linktype == meta.linktype
        assert at == pytest.approx(((meta.tshigh << 32) | meta.tslow) / meta.tsresol, abs=1e-6)


def test_pcapng_interfaces_with_their_own_link_types_and_resolutions(tmp_path: Path) -> None:
    content = (
        section()
        + interface(127)  # default resolution: microseconds
        + interface(256, options=option(9, b"\x09") + option(14, struct.pack("<q", 100)))
        + interface(251, options=option(9, b"\x8a"))  # 2^-10 seconds
        + enhanced(0, 1_709_373_600_123_456, b"wifi")
        + enhanced(1, 5_000_000_000, b"ble")
        + block(4, b"name resolution: ignored")
        + enhanced(2, 3 * 1024 + 512, b"ll", wire=10)
        + block(3, struct.pack("<I", 6) + b"simple")  # no timestamp: takes the last one
    )
    frames = read_all(write(tmp_path, content, "multi.pcapng"))
    assert frames == [
        (pytest.approx(1_709_373_600.123456), 127, b"wifi", 4),
        (105.0, 256, b"ble", 3),
        (3.5, 251, b"ll", 10),
        (3.5, 127, b"simple", 6),
    ]


def test_big_endian_pcapng_and_a_second_section(tmp_path: Path) -> None:
    content = (
        section(">") + interface(127, ">") + enhanced(0, 2_000_000, b"first", ">")
        + section("<") + interface(256) + enhanced(0, 3_000_000, b"second")
    )
    frames = read_all(write(tmp_path, content, "sections.pcapng"))
    assert frames == [(2.0, 127, b"first", 5), (3.0, 256, b"second", 6)]


# ---------------------------------------------------------------- damage


def damaged(tmp_path: Path, content: bytes, name: str = "bad.pcap") -> tuple[list[Frame], str]:
    """The frames read before the damage, and the error the damage raised."""
    frames: list[Frame] = []

    def read_into_frames() -> None:
        frames.extend(read_frames(write(tmp_path, content, name)))

    with pytest.raises(CaptureFileError) as error:
        read_into_frames()
    return frames, str(error.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\xd4\xc3", "too short"),
        (b"GIF89a" + bytes(30), "unknown magic"),
        (pcap_bytes([])[:20], "file header is truncated"),
    ],
)
def test_files_that_are_not_captures(tmp_path: Path, content: bytes, message: str) -> None:
    frames, error = damaged(tmp_path, content)
    assert frames == []
    assert message in error


def test_truncated_pcap_records_keep_the_frames_before_them(tmp_path: Path) -> None:
    content = pcap_bytes(FRAMES)
    with pytest.raises(CaptureTruncatedError):
        list(read_frames(write(tmp_path, content[:-5])))
    frames, error = damaged(tmp_path, content[:-5])
    assert [f[2] for f in frames] == FRAMES[:2]
    assert "record 2 data is truncated" in error
    frames, error = damaged(tmp_path, content[: 24 + 16 + 3 + 10])
    assert len(frames) == 1
    assert "record 1 header is truncated" in error


@pytest.mark.parametrize(
    ("content", "truncated"),
    [
        (pcap_bytes([])[:20], True),
        (pcap_bytes(FRAMES)[:-5], True),
        (pcap_bytes(FRAMES)[: 24 + 16 + 3 + 10], True),
        (section() + interface(127) + enhanced(0, 1, b"x")[:-4], True),
        (section()[:10], True),
        (pcap_bytes([]) + struct.pack("<IIII", 0, 0, MAX_FRAME_LEN + 1, 10), False),
        (section() + interface(127)[:-4] + struct.pack("<I", 99), False),
        (b"GIF89a" + bytes(30), False),
    ],
)
def test_files_cut_short_are_told_from_damaged_ones(
    tmp_path: Path, content: bytes, truncated: bool
) -> None:
    with pytest.raises(CaptureFileError) as error:
        list(read_frames(write(tmp_path, content)))
    assert isinstance(error.value, CaptureTruncatedError) is truncated


def test_absurd_record_lengths_are_corruption(tmp_path: Path) -> None:
    content = pcap_bytes([]) + struct.pack("<IIII", 0, 0, MAX_FRAME_LEN + 1, 10)
    _, error = damaged(tmp_path, content)
    assert "file is corrupt" in error


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (section()[:10], "header is truncated"),
        (section() + interface(127) + enhanced(0, 1, b"x")[:-4], "is truncated"),
        (section() + interface(127)[:-4] + struct.pack("<I", 99), "lengths disagree"),
        (section() + struct.pack("<II", 1, 13) + bytes(8), "bad length"),
        (section() + struct.pack("<II", 1, 8) + bytes(8), "bad length"),
        (section() + enhanced(0, 1, b"x"), "undeclared interface 0"),
        (section() + interface(127) + block(6, struct.pack("<IIIII", 0, 0, 0, 50, 50)),
         "claims more data"),
        (section() + interface(127) + block(6, b"\x00" * 8), "too short"),
        (section() + block(1, b"\x7f\x00"), "too short"),
        (section() + block(1, struct.pack("<HHI", 127, 0, 0) + struct.pack("<HH", 9, 8) + b"\x09"),
         "truncated option"),
        (section() + block(3, struct.pack("<I", 1) + b"x"), "undeclared interface 0"),
        (section() + interface(127) + block(3, b""), "simple packet) is too short"),
        (block(0x0A0D0D0A, struct.pack("<IHHq", 0x12345678, 1, 0, -1)), "byte-order magic"),
        (block(0x0A0D0D0A, struct.pack("<I", 0x1A2B3C4D)), "too short"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_damaged_pcapng_blocks(tmp_path: Path, content: bytes, message: str) -> None:
    _, error = damaged(tmp_path, content, "bad.pcapng")
    assert message in error


def test_unreadable_files_raise_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_all(tmp_path / "missing.pcap")
    with pytest.raises(IsADirectoryError):
        read_all(tmp_path)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([b"", b"\x0a\x0d\x0d\x0a", b"\xd4\xc3\xb2\xa1"]))
def test_arbitrary_bytes_either_read_or_raise_capture_file_error(
    tmp_path: Path, tail: bytes, head: bytes
) -> None:
    path = write(tmp_path, head + tail, "fuzz.bin")
    try:
        for at, linktype, frame, wire in read_frames(path):
            assert isinstance(at, float)
            assert linktype >= 0
            assert len(frame) <= MAX_FRAME_LEN
            assert wire >= 0
    except CaptureFileError:
        pass
