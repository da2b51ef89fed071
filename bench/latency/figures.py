"""The figures: latency spreads, the per-event timestamps the orchestrator stores, each
stage's throughput from the sampled progress, and one run's results."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, text

from bench.latency import TARGET_P99_MS, TENANT
from bench.latency.probes import Sample


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of `values` (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Spread:
    """A latency distribution in milliseconds."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Spread:
        ms = [value * 1000 for value in seconds]
        return cls(len(ms), percentile(ms, 50), percentile(ms, 90), percentile(ms, 99),
                   max(ms) if ms else math.nan)

    def row(self, name: str, note: str = "") -> str:
        return (f"| {name} | {self.count:,} | {self.p50:,.1f} | {self.p90:,.1f} | "
                f"{self.p99:,.1f} | {self.max:,.1f} | {note} |")


@dataclass(frozen=True, slots=True)
class Stages:
    """Per-event timestamps the orchestrator stores, for the measured events."""

    recorded: dict[int, float]
    processed: dict[int, float]
    sent: dict[int, float]


def stored_stages(engine: Engine, indexes: Sequence[int]) -> Stages:
    """When ingest wrote each event's trigger (its `now` when the write began), when the
    scenario round that handled it began, and when the delivery round that sent its push
    began: three clocks inside the worker, read back from the rows they stamped."""
    wanted = set(indexes)
    recorded: dict[int, float] = {}
    processed: dict[int, float] = {}
    sent: dict[int, float] = {}
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT c.external_id, t.recorded_at, t.processed_at, m.sent_at "
            "FROM customer c JOIN scenario_trigger t ON t.customer_id = c.id "
            "LEFT JOIN message m ON m.customer_id = c.id WHERE c.tenant = :tenant"
        ), {"tenant": TENANT}).all()
    for external_id, at_recorded, at_processed, at_sent in rows:
        index = int(str(external_id).rsplit("-", 1)[1])
        if index not in wanted:
            continue
        recorded[index] = at_recorded.timestamp()
        if at_processed is not None:
            processed[index] = at_processed.timestamp()
        if at_sent is not None:
            sent[index] = at_sent.timestamp()
    return Stages(recorded, processed, sent)


def stage_spreads(
    stages: Stages, handed: dict[int, float], arrived: dict[int, float],
    indexes: Sequence[int],
) -> dict[str, Spread]:
    complete = [i for i in indexes if i in stages.recorded and i in stages.processed
                and i in stages.sent and i in arrived]
    return {
        "hand-off -> ingest begins writing (edge, MQTT, ingest linger, decoding)":
            Spread.of([stages.recorded[i] - handed[i] for i in complete]),
        "ingest begins writing -> scenario round begins (write, commit, wake-up, "
        "the round before)":
            Spread.of([stages.processed[i] - stages.recorded[i] for i in complete]),
        "scenario round begins -> delivery round begins (the round, wake-up, "
        "the round before)":
            Spread.of([stages.sent[i] - stages.processed[i] for i in complete]),
        "delivery round begins -> request at the FCM server (claim, prepare, send)":
            Spread.of([arrived[i] - stages.sent[i] for i in complete]),
    }


@dataclass(frozen=True, slots=True)
class Throughput:
    """How one stage kept up: its pace over the measured events and what waited for it."""

    per_s: float
    backlog_at_end_of_feed: int
    peak_backlog: int


def throughputs(
    samples: Sequence[Sample], *, begun: float, ended: float, before: int, measured: int
) -> dict[str, Throughput]:
    """Each stage's progress from the sampler: events stored, triggers handled, pushes
    sent. A stage that kept up finishes its share soon after the last hand-off (its pace
    is then the arrival rate); one that fell behind finishes late, and its pace is its
    capacity. The backlog counts what had reached the stage and was not yet done.

    `before` is what every stage had done when the measured phase began: the warm-up,
    whose pushes had all arrived (one event, one trigger, one push each)."""
    if not samples:
        return {}

    def handed(sample: Sample) -> int:
        """Events handed by then (on schedule), counting the warm-up already stored."""
        share = (sample.at - begun) / max(ended - begun, 1e-9)
        return before + min(measured, max(0, round(share * measured)))

    stages: dict[str, tuple[Callable[[Sample], int], Callable[[Sample], int]]] = {
        "ingest: events stored": (
            lambda sample: sample.events, lambda sample: handed(sample) - sample.events,
        ),
        "scenarios: triggers handled": (
            lambda sample: sample.triggers - sample.unprocessed,
            lambda sample: sample.unprocessed,
        ),
        "delivery: pushes sent": (
            lambda sample: sample.messages - sample.pending, lambda sample: sample.pending,
        ),
    }
    found: dict[str, Throughput] = {}
    for name, (done, waiting) in stages.items():
        goal = before + measured
        finished = next((s.at for s in samples if done(s) >= goal), samples[-1].at)
        at_end = min(samples, key=lambda s: abs(s.at - ended))
        found[name] = Throughput(
            per_s=(min(goal, done(samples[-1])) - before) / max(finished - begun, 1e-9),
            backlog_at_end_of_feed=max(0, waiting(at_end)),
            peak_backlog=max(max(0, waiting(s)) for s in samples),
        )
    return found


@dataclass(frozen=True, slots=True)
class Run:
    rate: float
    seconds: float
    #: How many worker processes, and how the stages are laid out among them.
    workers: str
    warmup: int
    measured: int
    achieved_rate: float
    end_to_end: Spread
    thirds: tuple[Spread, Spread, Spread]
    missing: int
    duplicates: int
    transport: Spread
    fcm: Spread
    stages: dict[str, Spread]
    throughput: dict[str, Throughput]
    log_problems: list[str]
    load: tuple[float, float]

    @property
    def floor_p99(self) -> float:
        return self.transport.p99 + self.fcm.p99

    @property
    def ratio(self) -> float:
        return self.end_to_end.p99 / self.floor_p99

    @property
    def meets(self) -> bool:
        return (self.end_to_end.p99 < TARGET_P99_MS and self.missing == 0
                and self.duplicates == 0)
