"""Replay wall time: the demo capture through the whole agent to a local Mosquitto.

What `vitrina-edge replay --max-speed` spends once its process is up: decoding, tracking,
the outbox, publishing at QoS 1 until every event is acknowledged, the retained offline
status, disconnecting. Reported against decoding the same capture alone in the same
process (the floor no replay goes under), and split at the capture's end, so the tail
(draining and shutting down) shows on its own. Rounds alternate the two, each the median.

    .venv/bin/python -m bench.bench_replay_wall [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_edge_publish import settings_for
from edge.capture.beacons import BeaconConfig
from edge.capture.replay import ReplayStats, read_pcap_sightings
from edge.captures import DEMO_CAPTURE
from provisioning.local_broker import LocalBroker, local_broker
from tests.edge.support import replay_demo_timed


def decode_only(beacons: BeaconConfig) -> float:
    started = time.perf_counter()
    stats = ReplayStats()
    for _ in read_pcap_sightings(DEMO_CAPTURE, beacons=beacons, stats=stats):
        pass
    return time.perf_counter() - started


def agent_replay(broker: LocalBroker, outbox: Path) -> tuple[float, float]:
    """(whole run, the part after the capture's end) in seconds."""
    return replay_demo_timed(settings_for(broker, outbox), drain_timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    floor, whole, tail = [], [], []
    with tempfile.TemporaryDirectory(prefix="vitrina-bench-") as tmp, local_broker(
        workdir=Path(tmp)
    ) as broker:
        for round_number in range(args.rounds):
            settings = settings_for(broker, Path(tmp) / f"floor-{round_number}.db")
            floor.append(decode_only(settings.beacons.to_config()))
            run, after = agent_replay(broker, Path(tmp) / f"round-{round_number}.db")
            whole.append(run)
            tail.append(after)
    base, total, end = (statistics.median(xs) for xs in (floor, whole, tail))
    print(f"capture                {DEMO_CAPTURE.name}, {args.rounds} rounds, medians")
    print(f"decoding alone         {base * 1000:7.1f} ms (baseline)")
    print(f"replay through agent   {total * 1000:7.1f} ms (min {min(whole) * 1000:.1f}, "
          f"max {max(whole) * 1000:.1f}); {total / base:.0f}x the baseline")
    print(f"after the capture ends {end * 1000:7.1f} ms (drain, offline status, disconnect)")


if __name__ == "__main__":
    main()
