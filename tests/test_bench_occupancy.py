"""The occupancy benchmark runs end to end on a small synthetic crowd (the dataset it
measures is not part of the repository, and the tests do not read it)."""

from __future__ import annotations

import sys

import pytest

from bench import bench_occupancy


def test_the_benchmark_runs_small(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", [
        "bench_occupancy", "--no-dataset", "--synthetic-crowds", "1", "--synthetic-minutes", "30",
    ])
    bench_occupancy.main()
    out = capsys.readouterr().out
    assert "dataset" not in out.split("synthetic crowds")[0]
    assert "| synthetic, all minutes | " in out
    assert "visits per real visit" in out
    assert "us per frame" in out
    assert "out of sample: fitted on 1 synthetic training crowds" in out
    assert "| synthetic, up to 10 present | " in out
