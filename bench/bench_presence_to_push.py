"""Presence-to-push latency: a presence event handed to a gateway's outbox, to the push
request arriving at the local FCM server, at a steady rate.

Every part is the real one, each in its own process as in production:
- gateways: the edge's own `Outbox` and `MqttPublisher` (in this process, one per store),
  fed `enter` events of app beacons at `--rate` events/s in total;
- a Mosquitto started for the run;
- the orchestrator's worker as deployed: a `vitrina-cloud worker --stage ...` process per
  stage (presence ingest, scenario worker, delivery worker with the FCM sender), started
  and stopped by the bench as a process manager would, waking each other through the
  database; or with `--one-process` one `vitrina-cloud worker` running all three; on a
  fresh, migrated PostgreSQL database;
- the local FCM server (`python -m sandbox.fcm`), standing in for Google.

The database holds one consenting customer per event (push and location-marketing
consent, an FCM token, the app install whose beacon the gateway sees), and the shop's
in-store greeting (`demo.welcome`: a push on `presence.enter`). So every event starts a
fresh journey and sends exactly one push, to a token that says which event it was for.

An event's latency runs from the moment it is written to its gateway's outbox (the
agent's hand-off; the time is taken just before) to the moment the FCM server records
the request (`received_at`, wall clock: the same clock on one machine). Baselines,
measured in the same run and under the same load:
- MQTT transport: a bare paho subscriber on the presence topics records when each event
  arrives (same hand-off, same outbox and publisher, same broker);
- FCM send: a thread in this process sends one push at a time through `FcmSender` (the
  delivery worker's sender) straight to the FCM server, every 50 ms, timed from the call
  to the server's record.
Their p99s added up are the floor the pipeline stands on; the ratio is measured p99 over
that floor. The stage breakdown comes from the timestamps the orchestrator itself stores
(trigger recorded and processed, message sent), so it needs no instrumentation.

    .venv/bin/python -m bench.bench_presence_to_push [--rate 500 [100 ...]] [--seconds 25] \
        [--warmup 5] [--workers 1] [--one-process] [--set ingest.batch_wait_s=0.02 ...] \
        [--output docs/benchmarks/latency.md]

Each rate runs from scratch (broker, database, FCM server, workers), one after the other.

Target: p99 < 250 ms at 500 events/s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.latency import TARGET_RATE
from bench.latency.report import render, write_page
from bench.latency.runner import run
from bench.latency.services import parse_overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, nargs="+", default=[TARGET_RATE],
                        help="events per second; several rates run one after the other")
    parser.add_argument("--seconds", type=float, default=25.0, help="measured phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="a worker setting other than the production default")
    parser.add_argument("--workers", type=int, default=1,
                        help="workers: each a process per stage, or one with --one-process")
    parser.add_argument("--one-process", action="store_true",
                        help="each worker runs all stages in one process (`vitrina-cloud "
                             "worker` without --stage), for comparison")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    runs = [run(rate, args.seconds, args.warmup, overrides, args.workers,
                one_process=args.one_process)
            for rate in args.rate]
    command = " ".join(["python -m bench.bench_presence_to_push", *sys.argv[1:]])
    report = render(runs, command=command, overrides=overrides)
    print(report)
    if args.output is not None:
        write_page(args.output, report)


if __name__ == "__main__":
    main()
