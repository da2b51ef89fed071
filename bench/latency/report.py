"""The page the bench writes (docs/benchmarks/latency.md): the runs side by side, then
each run's paths, stage throughputs and where the time went."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.latency import (
    FCM_PROBE_INTERVAL_S,
    SAMPLE_INTERVAL_S,
    STORES,
    TARGET_P99_MS,
    TARGET_RATE,
    TICK_S,
)
from bench.latency.figures import Run

#: The page keeps what follows this line when the bench writes it again.
KEPT_MARKER = "<!-- Written by hand below; the bench keeps it when it rewrites the page. -->"


def verdict(run: Run) -> str:
    """Meets or misses at the target rate; at other rates only which side of the bound."""
    if run.rate == TARGET_RATE:
        return "meets" if run.meets else "**misses**"
    return f"({'under' if run.meets else 'over'} {TARGET_P99_MS:.0f} ms)"


def describe_overrides(overrides: dict[str, Any]) -> str:
    return ", ".join(
        f"`{section}.{key}={json.dumps(value)}`"
        for section, fields in overrides.items() if isinstance(fields, dict)
        for key, value in fields.items()
    )


def render(runs: Sequence[Run], *, command: str, overrides: dict[str, Any]) -> str:
    lines = [
        "# Presence-to-push latency",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}) with `{command}`.",
        "",
        "The path is the production one, each part in its own process: the gateways' own "
        f"outbox and MQTT publisher ({STORES} stores, one gateway each, in the bench "
        "process) -> a Mosquitto started for the run -> the orchestrator's worker (presence "
        "ingest, scenario worker and delivery worker with the FCM sender: as deployed, a "
        "`vitrina-cloud worker --stage ...` process per stage, started by the bench as a "
        "process manager would and woken through the database; or all three in one "
        "`vitrina-cloud worker` process, as the workers column says) on a fresh PostgreSQL "
        "database -> the local FCM server in its own process. The database holds one "
        "consenting customer per event (push and location-marketing consent, an FCM token, "
        "the app install whose beacon the gateway reports) and the shop's in-store "
        "greeting (`demo.welcome`: a push on `presence.enter`), so every event starts a "
        "journey and sends exactly one push.",
        "",
        "Events are handed to the gateways' outboxes on schedule, a few every "
        f"{TICK_S * 1000:.0f} ms as the agent flushes, after a warm-up whose pushes all "
        "arrive before the measured events start. Latency runs from the hand-off (the time "
        "is taken just before the outbox write) to the FCM server recording the request; "
        "both are the machine's wall clock. Same-run baselines: a bare paho subscriber on "
        "the presence topics (hand-off -> MQTT arrival through the same outbox, publisher "
        "and broker), and one push at a time through `FcmSender` straight to the FCM "
        f"server every {FCM_PROBE_INTERVAL_S * 1000:.0f} ms during the run. Their p99s "
        "added up are the floor; the ratio is the pipeline's p99 over it.",
        "",
        f"Worker settings: production defaults except {describe_overrides(overrides)}.",
        "",
        "| events/s | workers | events | p50 ms | p90 ms | p99 ms | max ms | missing | "
        "duplicates | floor p99 ms | p99 / floor | verdict |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        e2e = run.end_to_end
        lines.append(
            f"| {run.rate:g} | {run.workers} | {e2e.count:,} | {e2e.p50:,.0f} | "
            f"{e2e.p90:,.0f} | {e2e.p99:,.0f} | {e2e.max:,.0f} | {run.missing} | "
            f"{run.duplicates} | {run.floor_p99:.1f} | {run.ratio:,.1f} | "
            f"{verdict(run)} |"
        )
    lines += ["", f"Target: p99 < {TARGET_P99_MS:.0f} ms at {TARGET_RATE} events/s, every "
              "event exactly one push.", ""]
    for run in runs:
        lines += render_run(run)
    return "\n".join(lines)


def render_run(run: Run) -> list[str]:
    return [
        f"## {run.rate:g} events/s, workers: {run.workers}",
        "",
        f"{run.warmup:,} warm-up and {run.measured:,} measured events ({run.seconds:g} s at "
        f"{run.achieved_rate:.0f}/s achieved). One-minute load average (this run's own "
        "processes and any other work included): "
        f"{run.load[0]:.1f} at the start, {run.load[1]:.1f} at the end.",
        "",
        "| path | events | p50 ms | p90 ms | p99 ms | max ms | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        run.end_to_end.row("presence -> push (end to end)",
                           f"missing {run.missing}, duplicates {run.duplicates}"),
        run.thirds[0].row("&nbsp;&nbsp;events of the first third of the run"),
        run.thirds[1].row("&nbsp;&nbsp;middle third"),
        run.thirds[2].row("&nbsp;&nbsp;last third", "a growing backlog shows here"),
        run.transport.row("baseline: hand-off -> bare paho subscriber",
                          "same outbox, publisher and broker"),
        run.fcm.row("baseline: `FcmSender.send` of one push -> FCM server",
                    f"one every {FCM_PROBE_INTERVAL_S * 1000:.0f} ms during the run"),
        "",
        "Each stage's pace over the measured events, from the database sampled every "
        f"{SAMPLE_INTERVAL_S * 1000:.0f} ms (a stage that keeps up runs at the arrival rate; "
        "one that falls behind runs at its capacity, and its backlog grows):",
        "",
        "| stage | per second | backlog when the last event was handed | peak backlog |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {name} | {t.per_s:,.0f} | {t.backlog_at_end_of_feed:,} | {t.peak_backlog:,} |"
          for name, t in run.throughput.items()),
        "",
        "Where each event's time went, from the timestamps the worker stores: the trigger's "
        "`recorded_at` (ingest's clock when it began writing the batch), its `processed_at` "
        "(when the scenario round that handled it began) and the message's `sent_at` (when "
        "the delivery round that sent it began). A scenario round that works through "
        "several full batches stamps them all with its start, so under a backlog the "
        "second stage can come out negative and its time shows in the third.",
        "",
        "| stage | events | p50 ms | p90 ms | p99 ms | max ms | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        *(spread.row(name) for name, spread in run.stages.items()),
        "",
        f"Worker log: {len(run.log_problems)} warnings or errors.",
        "",
    ]


def write_page(path: Path, report: str) -> None:
    """Write the page, keeping whatever follows `KEPT_MARKER` in the existing one (the
    analysis written by hand from the runs)."""
    kept = ""
    if path.exists():
        existing = path.read_text()
        if KEPT_MARKER in existing:
            kept = existing[existing.index(KEPT_MARKER):]
    path.write_text(report + ("\n" + kept if kept else ""))
