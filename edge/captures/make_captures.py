"""Regenerate the shipped captures, byte for byte: `python -m edge.captures.make_captures`.

Every frame is built with scapy, so the gateway's own decoders are tested against an
independent encoder; randomness comes from fixed seeds, and nothing reads the clock. The
stories are described in `edge.captures`; the parts that make them (frames, the
recorder, devices, each story, the damaged files) are in `edge.captures.generator`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.captures import (
    BUSY_STORE_CAPTURE,
    DEMO_CAPTURE,
    DEMO_NRF_CAPTURE,
    GARBAGE_FRAMES_CAPTURE,
    NOT_A_CAPTURE,
    TRUNCATED_CAPTURE,
)
from edge.captures.generator.busy_store import build_busy_store
from edge.captures.generator.demo_visit import build_demo
from edge.captures.generator.malformed import write_malformed
from edge.captures.generator.recorder import Recorder


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
    nrf = target(DEMO_NRF_CAPTURE)
    print(f"{nrf}: {demo.write_nordic_pcap(nrf)} frames")
    busy = Recorder()
    build_busy_store(busy)
    print(f"{target(BUSY_STORE_CAPTURE)}: {busy.write_pcapng(target(BUSY_STORE_CAPTURE))} frames")
    write_malformed(target(TRUNCATED_CAPTURE), target(GARBAGE_FRAMES_CAPTURE),
                    target(NOT_A_CAPTURE))


if __name__ == "__main__":
    main()
