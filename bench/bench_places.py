"""Geofence location checks: the STRtree index against loops over every geofence.

10,000 geofences of one retail chain over a country-sized area (mainland Spain's box,
about 1,000 x 800 km): stores cluster in 80 towns of Zipf-distributed size, one in twenty
stands out of town. 60% are circles of 50-300 m, 40% polygons (8-16 corners, 40-250 m
across from the centre, one in ten with a hole, like a mall's courtyard). Location fixes:
half near a store (within 600 m of one), a third around towns, the rest anywhere;
accuracies as phones report them: GPS 3-50 m (75%), Wi-Fi 50-300 m (20%), cell towers
300-3,000 m (5%). A check answers "which geofences does this fix lie inside, which does
it touch" (`GeofenceIndex.locate`).

Phases, run in one process and interleaved over rounds (the best of each is kept, the
machine being shared):

- naive loop: every fix tested against all 10,000 geofences with the exact test
  (`Geofence.relation`), on a subset of the fixes, normalised per check: the baseline;
- brute force, vectorised: the distance to every geofence's centre in one numpy
  operation per fix, then the exact test for those within reach (no index);
- single: `GeofenceIndex.locate`, one fix per call (what `GeofenceTracker.update` does),
  and its STRtree lookup alone (`GeofenceIndex.candidates`), to show where the time goes;
- batch: `GeofenceIndex.locate_many` over 10,000 fixes per call.

The answers are compared, not just timed: single == naive and brute force on their
subsets, batch == single on every fix. Also measured: building the index of 10,000
geofences (what every change costs), and `GeofenceTracker.update` (the single-fix
fixes as reports of 5,000 subjects).

    .venv/bin/python -m bench.bench_places [--checks N] [--rounds N] [--output PATH]

Target: >= 200,000 checks/s.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import shapely

from cloud.places.geodesy import LocalFrame, ecef, ecef_many
from cloud.places.geofences import CHORD_MARGIN_M, Circle, Geofence, Polygon, Relation
from cloud.places.index import GeofenceIndex, GeofenceRegistry, LocatedPairs
from cloud.places.tracker import GeofenceTracker, LocationReport

TARGET_CHECKS_PER_S = 200_000
TENANT = "bench"
GEOFENCES = 10_000
#: Mainland Spain's bounding box, degrees.
SOUTH, NORTH, WEST, EAST = 36.0, 43.8, -9.3, 3.3
TOWNS = 80
BATCH = 10_000
TRACKED_SUBJECTS = 5_000
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

T = TypeVar("T")
Fix = tuple[float, float, float]  # lat, lon, accuracy_m
Answer = tuple[frozenset[str], frozenset[str]]  # containing ids, intersecting ids


def star(rng: random.Random, frame: LocalFrame, radius_m: float, corners: int
         ) -> tuple[tuple[float, float], ...]:
    """A simple polygon around the frame's origin (star-shaped, so never self-crossing),
    as a closed ring of (lon, lat)."""
    step = 2.0 * math.pi / corners  # one corner per sector: no gap reaches half a turn
    angles = [step * (sector + rng.uniform(0.0, 0.8)) for sector in range(corners)]
    ring = []
    for angle in angles:
        reach = radius_m * rng.uniform(0.6, 1.0)
        lat, lon = frame.to_lat_lon(reach * math.cos(angle), reach * math.sin(angle))
        ring.append((lon, lat))
    return (*ring, ring[0])


def offset(lat: float, lon: float, distance_m: float, bearing: float) -> tuple[float, float]:
    frame = LocalFrame.at(lat, lon)
    return frame.to_lat_lon(distance_m * math.sin(bearing), distance_m * math.cos(bearing))


def make_geofences(rng: random.Random, count: int) -> tuple[list[Geofence], list[tuple[float,
                                                                                        float]]]:
    towns = [(rng.uniform(SOUTH, NORTH), rng.uniform(WEST, EAST)) for _ in range(TOWNS)]
    weights = [1.0 / (rank + 1) for rank in range(TOWNS)]
    # A town's stores spread with its size, at about two stores per km^2 (a dense chain:
    # Madrid has some 2,800 pharmacies over 600 km^2).
    spread_m = [2_000.0 * math.sqrt(count * weight / sum(weights) / 25.0) for weight in weights]
    geofences = []
    for number in range(count):
        if rng.random() < 0.05:
            lat, lon = rng.uniform(SOUTH, NORTH), rng.uniform(WEST, EAST)
        else:
            town = rng.choices(range(TOWNS), weights)[0]
            town_lat, town_lon = towns[town]
            lat, lon = offset(town_lat, town_lon, abs(rng.gauss(0.0, spread_m[town])),
                              rng.uniform(0.0, 2.0 * math.pi))
        shape: Circle | Polygon
        if rng.random() < 0.6:
            shape = Circle(lat, lon, rng.uniform(50.0, 300.0))
        else:
            frame = LocalFrame.at(lat, lon)
            radius = rng.uniform(40.0, 250.0)
            holes = ((star(rng, frame, radius * 0.25, 6),) if rng.random() < 0.1 else ())
            shape = Polygon(star(rng, frame, radius, rng.randint(8, 16)), holes)
        geofences.append(Geofence(f"g{number:05d}", TENANT, f"store-{number:05d}", shape,
                                  300.0, "Europe/Madrid"))
    return geofences, towns


def accuracy(rng: random.Random) -> float:
    draw = rng.random()
    if draw < 0.75:
        return rng.uniform(3.0, 50.0)
    if draw < 0.95:
        return rng.uniform(50.0, 300.0)
    return rng.uniform(300.0, 3_000.0)


def make_fixes(rng: random.Random, count: int, geofences: Sequence[Geofence],
               towns: Sequence[tuple[float, float]]) -> list[Fix]:
    fixes = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.5:
            frame = rng.choice(geofences).shape.frame
            lat, lon = offset(frame.lat, frame.lon, rng.uniform(0.0, 600.0),
                              rng.uniform(0.0, 2.0 * math.pi))
        elif draw < 0.83:
            town_lat, town_lon = rng.choice(towns)
            lat, lon = offset(town_lat, town_lon, abs(rng.gauss(0.0, 10_000.0)),
                              rng.uniform(0.0, 2.0 * math.pi))
        else:
            lat, lon = rng.uniform(SOUTH, NORTH), rng.uniform(WEST, EAST)
        fixes.append((lat, lon, accuracy(rng)))
    return fixes


def answer(containing: Sequence[Geofence], intersecting: Sequence[Geofence]) -> Answer:
    return (frozenset(g.id for g in containing), frozenset(g.id for g in intersecting))


def naive_loop(geofences: Sequence[Geofence], fixes: Sequence[Fix]) -> list[Answer]:
    answers = []
    for lat, lon, acc in fixes:
        containing, intersecting = [], []
        for geofence in geofences:
            relation = geofence.relation(lat, lon, acc)
            if relation is not Relation.OUTSIDE:
                intersecting.append(geofence)
                if relation is Relation.INSIDE:
                    containing.append(geofence)
        answers.append(answer(containing, intersecting))
    return answers


def brute_force(geofences: Sequence[Geofence], fixes: Sequence[Fix]) -> list[Answer]:
    """No index: one vectorised distance to every centre, the exact test for the near."""
    x0, y0, z0 = ecef_many(np.array([g.shape.frame.lat for g in geofences]),
                           np.array([g.shape.frame.lon for g in geofences]))
    reach = np.array([g.shape.reach_m for g in geofences]) + CHORD_MARGIN_M
    answers = []
    for lat, lon, acc in fixes:
        x, y, z = ecef(lat, lon)
        chord = np.sqrt((x0 - x) ** 2 + (y0 - y) ** 2 + (z0 - z) ** 2)
        containing, intersecting = [], []
        for position in np.flatnonzero(chord <= reach + acc):
            geofence = geofences[int(position)]
            relation = geofence.relation(lat, lon, acc)
            if relation is not Relation.OUTSIDE:
                intersecting.append(geofence)
                if relation is Relation.INSIDE:
                    containing.append(geofence)
        answers.append(answer(containing, intersecting))
    return answers


def candidates_only(index: GeofenceIndex, fixes: Sequence[Fix]) -> int:
    """The STRtree lookup of `locate` without the exact tests: the floor of a single check."""
    return sum(len(index.candidates(TENANT, lat, lon, acc)) for lat, lon, acc in fixes)


def single(index: GeofenceIndex, fixes: Sequence[Fix]) -> list[Answer]:
    answers = []
    for lat, lon, acc in fixes:
        location = index.locate(TENANT, lat, lon, acc)
        answers.append(answer(location.containing, location.intersecting))
    return answers


def batch(index: GeofenceIndex, columns: tuple[np.ndarray, np.ndarray, np.ndarray]
          ) -> list[LocatedPairs]:
    lat, lon, acc = columns
    return [index.locate_many(TENANT, lat[start:start + BATCH], lon[start:start + BATCH],
                              acc[start:start + BATCH])
            for start in range(0, lat.size, BATCH)]


def batch_answers_of(results: list[LocatedPairs], total: int) -> list[Answer]:
    per_row: list[tuple[list[str], list[str]]] = [([], []) for _ in range(total)]
    for number, pairs in enumerate(results):
        for row, position, inside in zip(pairs.report, pairs.geofence, pairs.inside,
                                         strict=True):
            geofence_id = pairs.geofences[int(position)].id
            per_row[number * BATCH + int(row)][1].append(geofence_id)
            if inside:
                per_row[number * BATCH + int(row)][0].append(geofence_id)
    return [(frozenset(containing), frozenset(intersecting))
            for containing, intersecting in per_row]


@dataclass(slots=True)
class Best:
    """The shortest time seen for a phase over the rounds."""

    seconds: float = math.inf

    def keep(self, seconds: float) -> None:
        self.seconds = min(self.seconds, seconds)

    def run(self, function: Callable[[], T]) -> T:
        """Call `function`, keep its time if it is the best so far, return its result."""
        started = time.perf_counter()
        result = function()
        self.keep(time.perf_counter() - started)
        return result


def tracker_rates(registry: GeofenceRegistry, fixes: Sequence[Fix], subjects: int
                  ) -> tuple[float, float, int]:
    """Reports/s through `update` one by one and through `update_many` (1,000 per call),
    on fresh trackers; both must decide the same transitions."""
    reports = [LocationReport(TENANT, f"c{number % subjects}", lat, lon, acc,
                              START + timedelta(seconds=number * 0.01))
               for number, (lat, lon, acc) in enumerate(fixes)]
    one_by_one = GeofenceTracker(registry)
    started = time.perf_counter()
    singles = [transition for report in reports for transition in one_by_one.update(report)]
    single_rate = len(reports) / (time.perf_counter() - started)
    batched = GeofenceTracker(registry)
    started = time.perf_counter()
    batches = [transition for start in range(0, len(reports), 1_000)
               for transition in batched.update_many(reports[start:start + 1_000])]
    batch_rate = len(reports) / (time.perf_counter() - started)
    assert singles == batches, "update_many != update"
    return single_rate, batch_rate, len(singles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--naive-checks", type=int, default=100)
    parser.add_argument("--single-checks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; the best of each is kept (shared machines)")
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the figures as markdown to this file")
    args = parser.parse_args()
    rng = random.Random(7)
    geofences, towns = make_geofences(rng, GEOFENCES)
    fixes = make_fixes(rng, args.checks, geofences, towns)
    columns = (np.array([f[0] for f in fixes]), np.array([f[1] for f in fixes]),
               np.array([f[2] for f in fixes]))
    naive_fixes = fixes[:args.naive_checks]
    brute_fixes = fixes[:args.single_checks // 10]
    single_fixes = fixes[:args.single_checks]

    build, naive_t, brute_t, single_t, batch_t = Best(), Best(), Best(), Best(), Best()
    lookup_t = Best()
    for _ in range(args.rounds):
        index = build.run(partial(GeofenceIndex.build, geofences))
        naive_answers = naive_t.run(partial(naive_loop, geofences, naive_fixes))
        brute_answers = brute_t.run(partial(brute_force, geofences, brute_fixes))
        single_answers = single_t.run(partial(single, index, single_fixes))
        candidate_pairs = lookup_t.run(partial(candidates_only, index, single_fixes))
        batch_answers = batch_answers_of(batch_t.run(partial(batch, index, columns)),
                                         len(fixes))
    assert single_answers[:len(naive_fixes)] == naive_answers, "single != naive loop"
    assert single_answers[:len(brute_fixes)] == brute_answers, "single != brute force"
    assert batch_answers[:len(single_fixes)] == single_answers, "batch != single"
    touching = sum(1 for _containing, intersecting in batch_answers if intersecting)
    inside = sum(1 for containing, _intersecting in batch_answers if containing)

    registry = GeofenceRegistry(geofences)
    put = Best()
    for _ in range(args.rounds):
        put.run(partial(registry.put, geofences[0]))
    put_s = put.seconds
    tracked = Best(), Best()
    for _ in range(args.rounds):
        single_rate, batch_rate, transitions = tracker_rates(registry, single_fixes,
                                                             TRACKED_SUBJECTS)
        tracked[0].keep(1.0 / single_rate)
        tracked[1].keep(1.0 / batch_rate)

    figures = Figures(
        rounds=args.rounds,
        checks=len(fixes),
        rates={
            "naive": len(naive_fixes) / naive_t.seconds,
            "brute": len(brute_fixes) / brute_t.seconds,
            "single": len(single_fixes) / single_t.seconds,
            "lookup": len(single_fixes) / lookup_t.seconds,
            "batch": len(fixes) / batch_t.seconds,
        },
        counts={"naive": len(naive_fixes), "brute": len(brute_fixes),
                "single": len(single_fixes), "lookup": len(single_fixes), "batch": len(fixes)},
        candidates_per_fix=candidate_pairs / len(single_fixes),
        touching=touching / len(fixes),
        inside=inside / len(fixes),
        build_s=build.seconds,
        put_s=put_s,
        tracker_rates=(1.0 / tracked[0].seconds, 1.0 / tracked[1].seconds),
        transitions=transitions,
        circles=sum(isinstance(g.shape, Circle) for g in geofences),
    )
    print(summary(figures))
    if args.output is not None:
        args.output.write_text(markdown(figures))


PHASES = {
    "naive": ("naive loop (baseline)", "`Geofence.relation` for every geofence"),
    "brute": ("brute force, vectorised", "numpy distance to every centre, exact test near ones"),
    "single": ("single `locate`", "STRtree + exact tests, one fix per call"),
    "lookup": ("single, STRtree lookup only", "`candidates`: checks, box, `STRtree.query`"),
    "batch": (f"batch `locate_many` ({BATCH:,} per call)",
              "bulk `STRtree.query`, numpy + `contains_xy` on prepared polygons"),
}


@dataclass(frozen=True, slots=True)
class Figures:
    rounds: int
    checks: int
    rates: dict[str, float]
    counts: dict[str, int]
    candidates_per_fix: float
    touching: float
    inside: float
    build_s: float
    put_s: float
    tracker_rates: tuple[float, float]
    transitions: int
    circles: int

    def verdict(self, key: str) -> bool:
        return self.rates[key] >= TARGET_CHECKS_PER_S


def summary(f: Figures) -> str:
    lines = [
        f"geofences {GEOFENCES:,} ({f.circles:,} circles), fixes {f.checks:,}:"
        f" {f.touching:.1%} touch a geofence, {f.inside:.1%} lie inside one;"
        f" {f.candidates_per_fix:.2f} STRtree candidates per fix",
        f"index build {f.build_s * 1e3:.0f} ms; registry.put (one tenant rebuilt)"
        f" {f.put_s * 1e3:.0f} ms",
    ]
    for key, (name, _what) in PHASES.items():
        rate = f.rates[key]
        lines.append(f"{name:<38} {rate:>11,.0f} checks/s  x{rate / f.rates['naive']:,.0f}"
                     f"  ({f.counts[key]:,} checks)")
    lines.append(f"tracker: update {f.tracker_rates[0]:,.0f} reports/s, update_many"
                 f" {f.tracker_rates[1]:,.0f} reports/s ({f.transitions:,} transitions)")
    for key in ("single", "batch"):
        lines.append(f"target {TARGET_CHECKS_PER_S:,}/s, {key}:"
                     f" {'meets' if f.verdict(key) else 'MISSES'}")
    return "\n".join(lines)


def markdown(f: Figures) -> str:
    rates = f.rates
    table = "\n".join(
        f"| {name} | {what} | {f.counts[key]:,} | {rates[key]:,.0f} |"
        f" {rates[key] / rates['naive']:,.0f}x |"
        for key, (name, what) in PHASES.items()
    )
    return f"""# Places benchmarks

## Location checks against 10,000 geofences (`bench/bench_places.py`)

Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},
shapely {shapely.__version__} (GEOS {shapely.geos_version_string}). The cores are shared
with other work (load average {os.getloadavg()[0]:.1f} at the end of the run), so every
phase runs in the same process, interleaved over {f.rounds} rounds, and the best round of
each is kept; absolute figures move with the load, the ratios much less.

Data: {GEOFENCES:,} geofences of one tenant over mainland Spain's box, in {TOWNS} towns of
Zipf-distributed size at about two stores per km^2 ({f.circles:,} circles of 50-300 m, the
rest polygons of 8-16 corners, one in ten with a hole). {f.checks:,} fixes: half within
600 m of a store, a third around towns, the rest anywhere; accuracy 3-50 m (75%), 50-300 m
(20%), 300-3,000 m (5%). {f.touching:.1%} of the fixes touch a geofence and {f.inside:.1%}
lie inside one; the STRtree leaves {f.candidates_per_fix:.2f} candidates per fix. A check
answers which geofences a fix lies inside and which it touches. Every phase's answers are
compared with the others' in the run (single = naive loop = brute force, batch = single).

| phase | what it does | checks | checks/s | vs naive loop |
| --- | --- | --- | --- | --- |
{table}

Target: >= {TARGET_CHECKS_PER_S:,} checks/s.

- **Batch (`GeofenceIndex.locate_many`): {'met' if f.verdict('batch') else 'missed'}**,
  {rates['batch']:,.0f} checks/s ({rates['batch'] / TARGET_CHECKS_PER_S:.1f}x the target).
- **Single (`GeofenceIndex.locate`): {'met' if f.verdict('single') else 'missed'}**,
  {rates['single']:,.0f} checks/s ({rates['single'] / TARGET_CHECKS_PER_S:.2f}x the target).

## What the figures mean

- One fix per call costs {1e6 / rates['single']:.0f} us, of which the STRtree lookup
  alone takes {1e6 / rates['lookup']:.0f} us: checking the fix, building one shapely box
  and calling `STRtree.query` are each a Python-level shapely call with its own array
  conversions. The exact tests of the {f.candidates_per_fix:.2f} candidates take the rest.
  No arrangement of single calls gets near the 5 us per check that 200,000/s needs on
  this machine, so the target needs shapely 2's vectorised calls: `locate_many` builds
  all boxes and queries the tree in one call each, does the circle and polygon-edge
  arithmetic in numpy, and tests containment with `contains_xy` on prepared polygons.
- The naive loop tests every geofence with the same exact test ({1e3 / rates['naive']:.0f}
  ms per check). The vectorised brute force (no index, one numpy distance over all
  10,000 centres per fix) is the fair "no index" baseline: the single path is
  {rates['single'] / rates['brute']:.1f}x faster than it, the batch path
  {rates['batch'] / rates['brute']:.0f}x.
- `GeofenceTracker`, with {f.counts['single']:,} of the fixes as reports of
  {TRACKED_SUBJECTS:,} subjects: `update` {f.tracker_rates[0]:,.0f} reports/s,
  `update_many` (1,000 per call, lookups through `locate_many`)
  {f.tracker_rates[1]:,.0f} reports/s, deciding identical transitions
  ({f.transitions:,}). A worker taking reports in batches should use `update_many`.
- Index build for {GEOFENCES:,} geofences: {f.build_s * 1e3:.0f} ms. Shapes are validated,
  projected and prepared when a `Geofence` is made, so a rebuild is the boxes and the
  STRtree; `GeofenceRegistry.put` of one geofence (that tenant rebuilt aside, then swapped
  in by one assignment): {f.put_s * 1e3:.0f} ms, during which readers keep answering
  from the previous index.

Run it: `.venv/bin/python -m bench.bench_places [--checks N] [--rounds N] [--output PATH]`.
"""


if __name__ == "__main__":
    main()
