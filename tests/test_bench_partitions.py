"""The partitions benchmark runs end to end at a tiny size, so that it cannot rot between
the runs that measure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import bench_presence_partitions


def test_the_benchmark_runs_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "partitions.md"
    monkeypatch.setattr(sys, "argv", [
        "bench_presence_partitions", "--events", "20000", "--ingest", "1000", "--repeat", "1",
        "--migration-rows", "2000", "--output", str(output),
    ])
    bench_presence_partitions.main()
    page = output.read_text()
    assert "1,000 stores, 20,000 rows" in page
    assert "| retention: the oldest 30 days" in page
    assert "Migration 0035 converted a table of 2,000 rows" in page
