"""Damaged files for the tests: a capture cut in the middle of a record, garbage frames
in valid pcap framing, and a file that is not a capture at all."""

from __future__ import annotations

from pathlib import Path

from scapy.utils import RawPcapWriter

from edge.captures import DEMO_START
from edge.captures.generator.frames import probe_request, radiotap_header
from edge.captures.generator.recorder import LINKTYPE_RADIOTAP, Recorder


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
