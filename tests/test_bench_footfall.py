"""The footfall benchmark runs end to end at a tiny size, so that it cannot rot between
the runs that measure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import bench_footfall


def test_the_benchmark_runs_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "analytics.md"
    monkeypatch.setattr(sys, "argv", [
        "bench_footfall", "--events", "20000", "--stores", "3", "--repeat", "2",
        "--output", str(output), "--fresh", "--drop",
    ])
    bench_footfall.main()
    page = output.read_text()
    assert "20,000 presence events of one tenant, 3 stores" in page
    assert "| 90 days x 3 stores | p50 " in page
    assert not bench_footfall.database_exists(
        bench_footfall.Parameters(events=20000, stores=3).database
    )
